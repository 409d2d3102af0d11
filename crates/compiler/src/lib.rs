pub mod diagnostic;
pub mod syntax;
pub mod yaml;
