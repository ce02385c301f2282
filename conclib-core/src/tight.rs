//! Pushes onto a queue or list with no buffer yet that make room for exactly one.
//!
//! Why: `Vec` and `VecDeque` make room for four at their first push, and what an actor
//! holds it keeps for as long as it lives: most actors are sent a message at a time and
//! handle one or two message types, so three of the four places would be idle memory in
//! every actor that ever ran (docs/bench-log.md, "An actor that has run"). A second push grows
//! the buffer as usual.

use std::collections::VecDeque;

/// `vec.push(item)`, with room for one if `vec` had none.
#[inline]
pub(crate) fn push<T>(vec: &mut Vec<T>, item: T) {
    if vec.capacity() == 0 {
        vec.reserve_exact(1);
    }
    vec.push(item);
}

/// `queue.push_back(item)`, with room for one if `queue` had none.
#[inline]
pub(crate) fn push_back<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.capacity() == 0 {
        queue.reserve_exact(1);
    }
    queue.push_back(item);
}
