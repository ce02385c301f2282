//! A client call's first and last steps on the calling task's runtime: [`cooperate`],
//! [`settle`].

/// A client call's first step: one unit of the calling task's cooperative budget (tokio's
/// `coop`), which returns `Pending` once the task has used its budget without yielding.
///
/// A call that fails at once (Redis down: `Unavailable` on its first poll, no `.await` that
/// could wait) would otherwise never return `Pending`: tasks retrying such calls in a loop
/// held their workers for good, and starved the runtime's timers, its I/O and this client's
/// own reconnection (64 callers retrying at once never recovered, and asks returned 30 s
/// after their 2 s timeout). Outside a tokio runtime it does nothing.
pub(crate) async fn cooperate() {
    tokio::task::consume_budget().await;
}

/// A client call's last step when it failed: the calling task goes to the back of its
/// runtime's queue (after the runtime looked at its timers and I/O) before it sees the error.
///
/// While Redis is down, calls fail at once; callers that retry at once would otherwise each
/// fail up to a whole budget of calls (128) per turn, and a task whose ask just reached its
/// deadline waited behind all of them (at 256 such callers on two workers, 250 ms past its
/// timeout). A call that succeeds, or that failed after waiting, loses one turn at most.
pub(crate) async fn settle<T, E>(result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        tokio::task::yield_now().await;
    }
    result
}
