//! Scenarios.
use super::{Ctx, Findings};
use provflow_ir as ir;

pub fn lower(
    _ctx: &Ctx<'_>,
    _processes: &[ir::Process],
    _targets: &[ir::Target],
    _users: &ir::UserSchema,
    _out: &mut Findings,
) -> Vec<ir::Scenario> {
    Vec::new()
}
