//! Rebalancing a pattern's activations ([`Activator::rebalance`](crate::scale::Activator::rebalance)):
//! a member with more than its share passivates the excess, least recently used first, and
//! gives each one's URN key to the member with the fewest (a member that just joined), so
//! that their next requests activate them there (their state carried when their `on_stop`
//! calls `StateStore::dehydrate`, `migration.rs`).

use std::sync::Arc;

use super::activation;
use super::placement;
use crate::proxy::shared::Shared;

/// The most activations one look passivates: the rest at the next (a third of a lease on).
const MOST_AT_ONCE: u64 = 64;

/// How many of its `mine` activations a member passivates, given every live member's count
/// (its own among them): those above an even share (rounded up), when some member is below
/// that share by at least one after the move, else none (moving one would only swap them).
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

/// One look at pattern `prefix`'s directory (`shared`: the system's proxy): passivates
/// this member's [`excess`], if any.
pub(in crate::proxy) async fn rebalance(shared: &Arc<Shared>, prefix: &str) {
    let Ok(members) = placement::pattern_members(shared, prefix).await else {
        return;
    };
    let mine = shared.activations.count_under(prefix);
    let counts: Vec<u64> = members.iter().map(|m| m.activations).collect();
    let n = excess(mine, &counts);
    if n == 0 {
        return;
    }
    let urns = shared
        .activations
        .take_least_used(prefix, usize::try_from(n).unwrap_or(usize::MAX));
    tracing::info!(system = %shared.system_id, pattern = %prefix, mine, passivated = urns.len(), "rebalancing: handing activations to members with fewer");
    let mut others: Vec<(u64, String)> = members
        .iter()
        .filter(|m| m.system != shared.system_id)
        .map(|m| (m.activations, m.system.clone()))
        .collect();
    for urn in urns {
        crate::metrics::activation(&shared.system_id, prefix, "rebalanced");
        // To the member with the fewest, counting each choice: its URN key given there,
        // so that its next request goes straight to it (`serve/urn_keys.rs`, `hand_urn`).
        let target = others
            .iter_mut()
            .min_by_key(|(n, _)| *n)
            .map(|(n, system)| {
                *n += 1;
                system.clone()
            });
        let shared = shared.clone();
        tokio::spawn(async move {
            activation::move_away(&shared, &urn, target.as_deref()).await;
        });
    }
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
