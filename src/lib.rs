//! conclib placeholder
pub use conclib_core::*;
