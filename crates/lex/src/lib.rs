//! Lexical rules that the compiler and the runner must apply identically: how a text becomes
//! a value of a parameter type (dates and times included), how SQL text splits into tokens,
//! which known name a misspelled one most likely meant, and what a mail address is.
//!
//! **Invariant**: pure functions over text; no I/O, no global state.
#![forbid(unsafe_code)]

pub mod mailbox;
pub mod sql;
pub mod suggest;
pub mod time;
pub mod values;
