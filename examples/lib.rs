//! Shared code of the conclib examples and demo.
