//! UserSchema: built-in attributes plus custom ones.
use super::{Ctx, Findings};
use provflow_ir as ir;

pub fn lower(_ctx: &Ctx<'_>, _out: &mut Findings) -> ir::UserSchema {
    ir::UserSchema { name: None, attributes: Vec::new() }
}
