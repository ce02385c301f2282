use std::sync::Arc;

use super::Poller;
use crate::future_size::{future_size, never};

/// A delivery's future holds the ask and not the rare give-back's script call (fred's
/// command future is about 5 KB): each tick's delivery is a task of its own, and spawning
/// it copies its future whole (6,208 bytes with the give-back inline, 592 without, in a debug build).
#[test]
fn a_deliverys_future_leaves_its_give_back_boxed() {
    let deliver = future_size(|| never::<&Arc<Poller>>().deliver(never(), never()));
    assert!(deliver <= 1024, "a delivery's future is {deliver} bytes");
}
