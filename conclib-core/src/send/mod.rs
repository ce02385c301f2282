//! Sending: typed refs, the request builders, the ask's timer, broadcasts.

pub(crate) mod actor_ref;
pub(crate) mod address;
pub(crate) mod ask_timer;
pub(crate) mod broadcast;
pub(crate) mod request;
