//! Test support: the size of a future, measured without making the call that returns it.
//! The client's and the proxy's tests keep their futures' rare paths boxed with it.

/// The size of the future `f` would return (`f` is never called).
pub(crate) fn future_size<R>(_: impl FnOnce() -> R) -> usize {
    std::mem::size_of::<R>()
}

/// Stands for an argument of a call that is never made.
pub(crate) fn never<T>() -> T {
    unreachable!("never called")
}
