//! What other processes may call: the exposed-message table and how a handler's error
//! travels.

pub(crate) mod remote;
pub(crate) mod wire;
