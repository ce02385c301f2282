//! Which member of a pattern's group activates a URN nobody holds yet: the rule
//! ([`Placement`]) and what it chooses among ([`MemberInfo`]). `placement.rs` applies it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// A custom placement: given the URN and the members live now (sorted by system id), the
/// system id of the member to activate it; `None`, or an id not in the list, places it on
/// the member that read the request.
pub type PlaceFn = Arc<dyn Fn(&str, &[MemberInfo]) -> Option<String> + Send + Sync>;

/// Where a pattern's URNs are activated: which member of the pattern's group activates a URN
/// nobody holds yet, chosen by the member that reads its first request among the members
/// live now. Set per pattern with [`Activator::placement`](crate::scale::Activator::placement).
///
/// Whatever the choice, a URN is activated by one member at a time (the claim is still the
/// URN's lease), and a member chosen that dies or is paused before it activates the URN
/// loses nothing: the others claim its request once its member lease lapses, and activate
/// the URN themselves.
///
/// ```no_run
/// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
/// # use conclib_redis::{ProxyConfig, start_proxy, scale::Placement};
/// # struct Account;
/// # impl Actor for Account { const REMOTE: &'static [ExposedMessage] = &[]; }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let system = ActorSystem::new("node-1");
/// let proxy = start_proxy(&system, &ProxyConfig::default()).await?;
/// // The same account on the same member, as long as the members stay the same.
/// proxy
///     .activate("account:{id}", |_a| async { Ok::<_, String>(Account) })
///     .placement(Placement::HashOfUrn)
///     .await?;
/// // Or any rule: here, the member with the fewest activations but never `node-3`.
/// let rule = Placement::custom(|_urn, members| {
///     members
///         .iter()
///         .filter(|m| m.system != "node-3")
///         .min_by_key(|m| m.activations)
///         .map(|m| m.system.clone())
/// });
/// # let _ = rule;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Placement {
    /// The member with the fewest activations of the pattern (ties: by a hash of the URN,
    /// so that members reading first requests of the same URN at once choose alike). The
    /// default.
    #[default]
    Spread,
    /// A member chosen at random.
    Random,
    /// A member chosen by a hash of the URN (rendezvous hashing): the same URN goes to the
    /// same member as long as the live members are the same, and when one joins or leaves,
    /// only the URNs that go to it, or went to it, go elsewhere.
    HashOfUrn,
    /// The system that sent the request, when it is a live member (its client sends its
    /// id: a [`ProxyClient`](crate::ProxyClient) whose [`ProxyConfig::system_id`](crate::ProxyConfig::system_id)
    /// is set); else as [`Spread`](Self::Spread).
    PreferAsker,
    /// A function of the URN and the live members ([`PlaceFn`]; [`Placement::custom`]).
    Custom(PlaceFn),
}

impl Placement {
    /// A [`Custom`](Self::Custom) placement from a function.
    pub fn custom(
        f: impl Fn(&str, &[MemberInfo]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Placement::Custom(Arc::new(f))
    }

    /// The member to activate `urn`: a system id of `members` (sorted by system id, not
    /// empty), or `None` for the one that read the request.
    pub(crate) fn choose<'a>(&self, urn: &str, members: &'a [MemberInfo]) -> Option<&'a str> {
        let spread = || {
            let least = members.iter().map(|m| m.activations).min()?;
            members
                .iter()
                .filter(|m| m.activations == least)
                .max_by_key(|m| weight(&m.system, urn))
                .map(|m| m.system.as_str())
        };
        match self {
            Placement::Spread => spread(),
            Placement::Random => {
                let r = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                members
                    .get((r % members.len().max(1) as u64) as usize)
                    .map(|m| m.system.as_str())
            }
            Placement::HashOfUrn => members
                .iter()
                .max_by_key(|m| weight(&m.system, urn))
                .map(|m| m.system.as_str()),
            Placement::PreferAsker => members
                .iter()
                .find(|m| m.asker)
                .map(|m| m.system.as_str())
                .or_else(spread),
            Placement::Custom(f) => {
                let chosen = f(urn, members)?;
                members
                    .iter()
                    .find(|m| m.system == chosen)
                    .map(|m| m.system.as_str())
            }
        }
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Spread => "Spread",
            Placement::Random => "Random",
            Placement::HashOfUrn => "HashOfUrn",
            Placement::PreferAsker => "PreferAsker",
            Placement::Custom(_) => "Custom(..)",
        })
    }
}

/// A live member of a pattern's group, as placement sees it: what a [`PlaceFn`] gets, and
/// what [`ProxyHandle::pattern_members`](crate::ProxyHandle::pattern_members) lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The member's system id.
    pub system: String,
    /// How many URNs of the pattern it has activated now (as it last wrote: at its last
    /// activation or passivation, or its last lease renewal).
    pub activations: u64,
    /// It is the member that read the request, and places it (for a listing: this system).
    pub reader: bool,
    /// It is the system that sent the request (see [`Placement::PreferAsker`]).
    pub asker: bool,
}

/// The rendezvous weight of `system` for `urn`: FNV-1a over both, then a finalizer that
/// spreads the bits (the same in every process and every version).
fn weight(system: &str, urn: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in system.bytes().chain([0xff]).chain(urn.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finalizer.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(counts: &[(&str, u64)]) -> Vec<MemberInfo> {
        counts
            .iter()
            .map(|(s, n)| MemberInfo {
                system: (*s).to_owned(),
                activations: *n,
                reader: *s == "a",
                asker: *s == "c",
            })
            .collect()
    }

    #[test]
    fn spread_takes_the_least_loaded_and_breaks_ties_by_the_urn() {
        let m = members(&[("a", 3), ("b", 1), ("c", 2)]);
        assert_eq!(Placement::Spread.choose("u:1", &m), Some("b"));
        let tied = members(&[("a", 0), ("b", 0), ("c", 0)]);
        let mut seen = std::collections::HashSet::new();
        for i in 0..60 {
            let urn = format!("u:{i}");
            let first = Placement::Spread.choose(&urn, &tied);
            assert_eq!(
                first,
                Placement::Spread.choose(&urn, &tied),
                "deterministic"
            );
            seen.insert(first.unwrap().to_owned());
        }
        assert_eq!(seen.len(), 3, "ties go to every member");
    }

    #[test]
    fn hash_of_urn_is_stable_and_moves_little() {
        let three = members(&[("a", 0), ("b", 9), ("c", 4)]);
        let two = members(&[("a", 0), ("b", 9)]);
        let mut counts = std::collections::HashMap::new();
        let mut moved = 0;
        for i in 0..3000 {
            let urn = format!("acct:{i}");
            let on3 = Placement::HashOfUrn.choose(&urn, &three).unwrap();
            *counts.entry(on3).or_insert(0) += 1;
            let on2 = Placement::HashOfUrn.choose(&urn, &two).unwrap();
            if on3 != "c" {
                assert_eq!(on3, on2, "only the URNs of the member gone move");
            } else {
                moved += 1;
            }
        }
        assert!(counts.values().all(|&n| n > 800), "{counts:?}");
        assert!(moved > 800 && moved < 1200, "{moved}");
        // The same in every process and version: pinned.
        assert_eq!(weight("s1", "acct:1"), weight("s1", "acct:1"));
        assert_eq!(
            Placement::HashOfUrn.choose("acct:1", &three),
            Placement::HashOfUrn.choose("acct:1", &three.clone())
        );
    }

    #[test]
    fn asker_custom_and_random() {
        let m = members(&[("a", 0), ("b", 0), ("c", 5)]);
        assert_eq!(Placement::PreferAsker.choose("u:1", &m), Some("c"));
        let no_asker = members(&[("a", 1), ("b", 0)]);
        assert_eq!(Placement::PreferAsker.choose("u:1", &no_asker), Some("b"));
        let not_c = Placement::custom(|_, m| {
            m.iter()
                .filter(|m| m.system != "b")
                .max_by_key(|m| m.activations)
                .map(|m| m.system.clone())
        });
        assert_eq!(not_c.choose("u:1", &m), Some("c"));
        let unknown = Placement::custom(|_, _| Some("zz".into()));
        assert_eq!(unknown.choose("u:1", &m), None, "not a member: the reader");
        for _ in 0..20 {
            assert!(Placement::Random.choose("u:1", &m).is_some());
        }
    }
}
