//! Typed values: how a text becomes a value of a parameter type, dates and times included.
