//! Processes.
use super::{Ctx, Findings};
use provflow_ir as ir;

pub fn lower(
    _ctx: &Ctx<'_>,
    _targets: &[ir::Target],
    _query_sets: &[ir::QuerySet],
    _users: &ir::UserSchema,
    _out: &mut Findings,
) -> Vec<ir::Process> {
    Vec::new()
}
