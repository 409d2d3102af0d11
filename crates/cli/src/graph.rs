//! `provflow graph`: a process's task graph as Mermaid or DOT.
use provflow_ir::{Bundle, Process};

pub fn mermaid(_bundle: &Bundle, _process: &Process) -> String {
    String::new()
}

pub fn dot(_bundle: &Bundle, _process: &Process) -> String {
    String::new()
}
