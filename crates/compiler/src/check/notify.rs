//! Notification events and templates.
use super::{Ctx, Findings};
use provflow_ir as ir;

pub fn lower_events(
    _ctx: &Ctx<'_>,
    _targets: &[ir::Target],
    _users: &ir::UserSchema,
    _out: &mut Findings,
) -> Vec<ir::NotificationEvent> {
    Vec::new()
}

pub fn lower_templates(
    _ctx: &Ctx<'_>,
    _events: &[ir::NotificationEvent],
    _users: &ir::UserSchema,
    _out: &mut Findings,
) -> Vec<ir::NotificationTemplate> {
    Vec::new()
}
