//! Templates and expressions (minijinja).
