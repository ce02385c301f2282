//! Rebalancing a pattern's activations ([`Activator::rebalance`](crate::scale::Activator::rebalance)):
//! a member with more than its share passivates the excess, least recently used first, and
//! gives each one's URN key to the member with the fewest (a member that just joined), which
//! activates them as soon as it reads the hand-over (`serve/urn_keys.rs`, `hand_urn`), their
//! state carried when their `on_stop` calls `StateStore::dehydrate` (`migration.rs`).
//!
//! A member looks at its pattern's directory with each renewal of its lease (a third of a
//! lease apart), and at once when a member joins: the joiner, listed in the directory,
//! appends a notice to each other member's own stream ([`announce_join`]), which that
//! member reads as a request and answers by looking ([`start`]). The notice is a wake-up
//! entry as placement's (`placed`, naming the group) with the pattern's prefix in a field
//! of its own (`joined`): a reader that knows only wake-ups (an earlier build, a Python
//! host) reads its pending list again and nothing more.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;

use super::passivation;
use super::placement;
use super::placement_rule::MemberInfo;
use super::versions;
use crate::conn::{self, keyed, owned, s};
use crate::protocol::{self, field};
use crate::proxy::shared::Shared;

/// The most activations one look passivates: the rest at the next.
const MOST_AT_ONCE: u64 = 64;

/// How many more rounds one look makes when it moved fewer than its excess (an
/// activation with requests in its mailbox is not taken; by the next round it may be idle).
const MORE_ROUNDS: usize = 4;

/// How many of its `mine` activations a member passivates, given the counts of the live
/// members it shares them with (its own among them; mid-roll, none of an older build):
/// those above an even share (rounded up), when some member is below that share by at
/// least one after the move, else none (moving one would only swap them).
pub(in crate::proxy) fn excess(mine: u64, counts: &[u64]) -> u64 {
    let members = counts.len() as u64;
    if members < 2 {
        return 0;
    }
    let total: u64 = counts.iter().sum();
    let share = total.div_ceil(members);
    let least = counts.iter().copied().min().unwrap_or(0);
    if mine <= share || least + 1 >= share {
        return 0;
    }
    (mine - share).min(share - least).min(MOST_AT_ONCE)
}

/// What made a member look at its pattern's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Look {
    /// A renewal of its lease (`group.rs`).
    Renewal,
    /// A member joined ([`announce_join`]).
    Joined,
}

/// A look at pattern `prefix`'s directory (`shared`: the system's proxy): passivates this
/// member's [`excess`], if any, moving each activation to the member with the fewest, and
/// returns once they are moved (in up to [`MORE_ROUNDS`] more rounds when some had
/// requests waiting). One look at a time per pattern: a renewal's asked while another runs
/// is left to it; a join's makes the one under way look once more when it is done (the
/// look under way read the directory before the joiner was listed, and gave it nothing).
///
/// A URN handed over counts for no member until it is activated there, so a
/// look soon after moves finds an excess that is not there: a renewal's look is skipped
/// within one renewal (a third of a lease) of the last look that moved some; a join's is
/// not (the new member is below its share whatever is under way).
pub(in crate::proxy) async fn rebalance(shared: &Arc<Shared>, prefix: &str, why: Look) {
    let Some(pattern) = shared.activations.pattern_for_prefix(prefix) else {
        return;
    };
    let settling = shared.config.lease_ttl / 3;
    let lock = || pattern.moved_at.lock().unwrap_or_else(|e| e.into_inner());
    if why == Look::Renewal && lock().is_some_and(|at| at.elapsed() < settling) {
        return;
    }
    if why == Look::Joined {
        pattern.joined_meanwhile.store(true, Ordering::Release);
    }
    let mut first = true;
    loop {
        // Another look is under way: it looks again for the join noted above.
        if pattern.rebalancing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Not short-circuited: a join noted before this look is answered by it.
        while std::mem::take(&mut first) | pattern.joined_meanwhile.swap(false, Ordering::AcqRel) {
            if look(shared, prefix).await {
                *lock() = Some(Instant::now());
            }
        }
        pattern.rebalancing.store(false, Ordering::Release);
        // A join noted between the last check and the release above: looked at by this
        // task, unless another look has started since (then that one does).
        if !pattern.joined_meanwhile.load(Ordering::Acquire) {
            return;
        }
    }
}

/// One look ([`rebalance`]): whether it moved any activation.
async fn look(shared: &Arc<Shared>, prefix: &str) -> bool {
    let Ok(members) = placement::pattern_members(shared, prefix).await else {
        return false;
    };
    let mine = shared.activations.count_under(prefix);
    let mut peers: Vec<MemberInfo> = members
        .into_iter()
        .filter(|m| m.system != shared.system_id)
        .collect();
    // Alone: nothing to share, and no look at the builds.
    if peers.is_empty() {
        return false;
    }
    // Mid-roll, shared with the members not of an older build only (`versions.rs`,
    // `Builds`).
    versions::builds(shared, prefix)
        .await
        .not_older_than(&shared.system_id, &mut peers);
    let counts: Vec<u64> = std::iter::once(mine)
        .chain(peers.iter().map(|m| m.activations))
        .collect();
    let excess = usize::try_from(excess(mine, &counts)).unwrap_or(usize::MAX);
    let mut left = excess;
    let mut others: Vec<(u64, String)> = peers
        .into_iter()
        .map(|m| (m.activations, m.system))
        .collect();
    for _ in 0..=MORE_ROUNDS {
        if left == 0 {
            break;
        }
        let urns = shared.activations.take_least_used(prefix, left);
        if urns.is_empty() {
            break;
        }
        left -= urns.len();
        tracing::info!(system = %shared.system_id, pattern = %prefix, mine, passivated = urns.len(), "rebalancing: handing activations to members with fewer");
        let moves = urns
            .into_iter()
            .map(|urn| {
                crate::metrics::activation(&shared.system_id, prefix, "rebalanced");
                // To the member with the fewest, counting each choice: its URN key given
                // there, so that its next request goes straight to it (`serve/urn_keys.rs`,
                // `hand_urn`).
                let target = others
                    .iter_mut()
                    .min_by_key(|(n, _)| *n)
                    .map(|(n, system)| {
                        *n += 1;
                        system.clone()
                    });
                async move {
                    // Each on its own: an activation's requests wait for its own stop only.
                    passivation::move_away(shared, &urn, target.as_deref()).await;
                }
            })
            .collect::<Vec<_>>();
        futures_util::stream::iter(moves)
            .buffer_unordered(super::eviction::MOVES_AT_ONCE)
            .collect::<Vec<()>>()
            .await;
    }
    let moved = left < excess;
    if moved {
        // Each move writes this member's count in a task of its own (`passivation.rs`):
        // written before the look ends, for the next look's reading of the directory.
        placement::report_activations(shared, prefix).await;
    }
    moved
}

/// A member just joined pattern `prefix`'s group and is listed in its directory
/// (`shared`: the system's proxy): tells every other member listed there, in its own
/// stream, so that each looks at once rather than at its next renewal.
pub(in crate::proxy) async fn announce_join(shared: &Shared, prefix: &str) {
    let Ok(members) = placement::pattern_members(shared, prefix).await else {
        return;
    };
    let group = protocol::pattern_group(prefix);
    let notices = members
        .iter()
        .filter(|m| m.system != shared.system_id)
        .map(|m| {
            let mut args = vec![
                owned(shared.keys.requests(&m.system)),
                s("NOMKSTREAM"),
                s("*"),
            ];
            args.extend(protocol::wake_up_fields(&group, field::JOINED, prefix));
            conn::call(&shared.cmd, keyed("XADD"), args)
        });
    for r in futures_util::future::join_all(notices).await {
        if let Err(e) = r {
            tracing::debug!(error = %e, pattern = %prefix, "could not tell a member of a join");
        }
    }
}

/// A look at pattern `prefix` ([`rebalance`]) in a task of its own (`shared`: this
/// system's proxy), if this system is a member of its group that rebalances it and is not
/// draining: at each renewal of the member's lease (`group.rs`), and when a member joined
/// ([`announce_join`], read by `serve/dispatch.rs`).
pub(in crate::proxy) fn start(shared: &Arc<Shared>, prefix: &str, why: Look) {
    let rebalances = shared
        .activations
        .pattern_for_prefix(prefix)
        .is_some_and(|p| p.rebalance);
    if !rebalances
        || shared.draining.load(Ordering::Acquire)
        || !shared.groups().contains_key(prefix)
    {
        return;
    }
    let (shared, prefix) = (shared.clone(), prefix.to_owned());
    tokio::spawn(async move { rebalance(&shared, &prefix, why).await });
}

#[cfg(test)]
mod tests {
    use super::excess;

    #[test]
    fn a_member_above_its_share_gives_the_excess_to_those_below() {
        // Two members of 20, one new: shares of 14; each old one gives 6 (at most what
        // the new one lacks).
        assert_eq!(excess(20, &[20, 20, 0]), 6);
        // Even: nothing moves; one apart: nothing either (it would only swap).
        assert_eq!(excess(14, &[14, 14, 12]), 0);
        assert_eq!(excess(14, &[14, 13, 13]), 0);
        // Alone, or at its share: nothing.
        assert_eq!(excess(60, &[60]), 0);
        assert_eq!(excess(10, &[10, 30, 0]), 0);
        // Bounded per look.
        assert_eq!(excess(1000, &[1000, 0]), 64);
    }
}
