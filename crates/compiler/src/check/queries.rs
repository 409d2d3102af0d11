//! ConnectorQueries and Targets.
use super::{Ctx, Findings};
use provflow_ir as ir;

pub fn lower_query_sets(_ctx: &Ctx<'_>, _out: &mut Findings) -> Vec<ir::QuerySet> {
    Vec::new()
}

pub fn lower_targets(_ctx: &Ctx<'_>, _query_sets: &[ir::QuerySet], _out: &mut Findings) -> Vec<ir::Target> {
    Vec::new()
}
