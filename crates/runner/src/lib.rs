//! The provflow runner: the state store, SQL targets and the task engine (SPEC §4).

pub mod clock;
pub mod engine;
pub mod secret;
pub mod store;
pub mod target;
pub mod value;

#[cfg(test)]
mod engine_tests;
