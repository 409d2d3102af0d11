//! Query text: placeholders, segments, calls.
