//! Placement: which member of a pattern's group activates a URN nobody holds yet.
//!
//! The member that reads a URN's first request from the group's stream decides, by the
//! pattern's [`Placement`], among the members live now: itself (it claims the URN and
//! activates it, as before), or another one. Then, in one script ([`PLACE_SCRIPT`]), the
//! entry moves to the chosen member's pending list (it stays in the group's stream) and an
//! entry appended to the chosen system's own stream wakes that member up: it reads its
//! pending list, claims the URN and activates it. An entry is placed only once, when it is
//! first read: one read from a pending list (placed here, claimed from a member that is
//! gone, or read again) is activated by whoever holds it. So a chosen member that dies or
//! is paused before it claims the URN loses nothing: once its member lease lapses (at
//! once when it ran on this host and its process is gone) the others claim its pending
//! entries, the placed one with them, as they claim any gone member's.
//!
//! Which members are live, and how many activations each has, is read from the pattern's
//! directory (`{ns}:placement:{prefix}`), in the same round trip as the URN's key: each
//! member writes its count there as it activates or passivates, and with its lease
//! renewal, live until one lease from then.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use fred::prelude::*;

use super::{Role, Shared};
use crate::conn::{self, as_bytes, keyed, keyed_at, owned, s};
use crate::protocol::{CONSUMER_GROUP, PROTOCOL_VERSION, field};
use crate::unacked::EntryId;

/// A custom placement: given the URN and the members live now (sorted by system id), the
/// system id of the member to activate it; `None`, or an id not in the list, places it on
/// the member that read the request.
pub type PlaceFn = Arc<dyn Fn(&str, &[MemberInfo]) -> Option<String> + Send + Sync>;

/// Where a pattern's URNs are activated: which member of the pattern's group activates a URN
/// nobody holds yet, chosen by the member that reads its first request among the members
/// live now. Set per pattern with [`Activator::placement`](crate::Activator::placement).
///
/// Whatever the choice, a URN is activated by one member at a time (the claim is still the
/// URN's lease), and a member chosen that dies or is paused before it activates the URN
/// loses nothing: the others claim its request once its member lease lapses, and activate
/// the URN themselves.
///
/// ```no_run
/// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
/// # use conclib_redis::{Placement, ProxyConfig, start_proxy};
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

/// Where a URN nobody holds goes, as its first request's reader decided.
pub(super) enum Placed {
    /// Here: the reader claims it (also when someone holds it already, or when the
    /// directory could not be read: the claim decides).
    Here,
    /// On this other member.
    There(String),
}

/// What became of a request placed on another member.
pub(super) enum Handed {
    /// Pending on the chosen member now (nothing to acknowledge here).
    Done,
    /// No longer pending here: another member claimed it (leave it).
    NotPending,
    /// Not placed (no stream for the chosen system, Redis did not answer): activate here.
    Failed,
}

impl Shared {
    /// The live members of the pattern `prefix` (with `sys`, this system's proxy, when this
    /// system is one of them: its count is the one it has now), sorted by system id;
    /// `asker`: the system that sent the request. With the holder of `urn` (`None` without
    /// one).
    pub(super) async fn directory(
        &self,
        sys: Option<&Shared>,
        prefix: &str,
        urn: Option<&str>,
        asker: Option<&str>,
    ) -> Result<(Vec<MemberInfo>, Option<String>), fred::error::Error> {
        let key = self.keys.placement(prefix);
        let pipeline = self.cmd.pipeline();
        if let Some(urn) = urn {
            let _ = conn::call(&pipeline, keyed("GET"), vec![owned(self.keys.urn(urn))]).await;
        }
        let read = |first: Value| vec![first, Value::Integer(1), owned(key.clone())];
        let _ = conn::call(
            &pipeline,
            keyed_at("EVALSHA", 2, false),
            read(owned(self.scripts.read_directory.sha.clone())),
        )
        .await;
        let mut results = pipeline.try_all::<Value>().await.into_iter();
        let holder = match urn {
            Some(_) => results
                .next()
                .transpose()?
                .and_then(|v| as_bytes(&v).map(|b| String::from_utf8_lossy(b).into_owned())),
            None => None,
        };
        let listed = match results.next() {
            Some(Err(e)) if conn::error_code_is(&e, "NOSCRIPT") => {
                conn::call(
                    &self.cmd,
                    keyed_at("EVAL", 2, false),
                    read(s(self.scripts.read_directory.text)),
                )
                .await?
            }
            Some(other) => other?,
            None => Value::Null,
        };
        let mut members = Vec::new();
        if let Value::Array(flat) = listed {
            let mut it = flat.into_iter();
            while let (Some(system), Some(count)) = (it.next(), it.next()) {
                let Some(system) =
                    as_bytes(&system).map(|b| String::from_utf8_lossy(b).into_owned())
                else {
                    continue;
                };
                let activations = as_bytes(&count)
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                    .or_else(|| count.as_u64())
                    .unwrap_or(0);
                members.push(MemberInfo {
                    asker: asker == Some(system.as_str()),
                    reader: sys.is_some_and(|me| system == me.system_id),
                    system,
                    activations,
                });
            }
        }
        // This system is live (it reads), and its own count is the freshest.
        if let Some(sys) = sys {
            let own = sys.activations.count_under(prefix);
            match members.iter_mut().find(|m| m.reader) {
                Some(me) => me.activations = own,
                None => members.push(MemberInfo {
                    system: sys.system_id.clone(),
                    activations: own,
                    reader: true,
                    asker: asker == Some(sys.system_id.as_str()),
                }),
            }
        }
        members.sort_by(|a, b| a.system.cmp(&b.system));
        Ok((members, holder))
    }

    /// Where `urn` (under `prefix`, placed by `placement`) is to be activated; `self` is
    /// the member instance that read its first request, `sys` its system's proxy.
    pub(super) async fn place(
        &self,
        sys: &Shared,
        prefix: &str,
        placement: &Placement,
        urn: &str,
        asker: Option<&str>,
    ) -> Placed {
        let (members, holder) = match self.directory(Some(sys), prefix, Some(urn), asker).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(%urn, error = %e, "could not read the pattern's directory; activating here");
                return Placed::Here;
            }
        };
        if holder.is_some() || members.len() < 2 {
            return Placed::Here;
        }
        match placement.choose(urn, &members) {
            Some(chosen) if chosen != sys.system_id => Placed::There(chosen.to_owned()),
            _ => Placed::Here,
        }
    }

    /// Moves entry `entry` of this member's stream to member `target`'s pending list and
    /// wakes that member up ([`PLACE_SCRIPT`](crate::protocol::PLACE_SCRIPT)).
    pub(super) async fn hand_to(&self, entry: EntryId, target: &str) -> Handed {
        let Role::Member(m) = &self.role else {
            return Handed::Failed;
        };
        let wake = owned(self.keys.requests(target));
        let wake_fields = [
            s(field::VERSION),
            s(PROTOCOL_VERSION),
            s(field::PLACED),
            owned(m.group.clone()),
        ];
        if self.cmd.is_clustered() {
            // Two keys in two slots: checked, moved, then the wake-up appended (a member
            // not woken up finds the entry at its next look at its pending list).
            if !self.still_mine(entry).await {
                return Handed::NotPending;
            }
            let claim = vec![
                owned(self.stream.requests_key.clone()),
                s(CONSUMER_GROUP),
                owned(target),
                Value::Integer(0),
                owned(entry.to_string()),
                s("JUSTID"),
            ];
            if conn::call(&self.cmd, keyed("XCLAIM"), claim).await.is_err() {
                return Handed::Failed;
            }
            let mut add = vec![wake, s("NOMKSTREAM"), s("*")];
            add.extend(wake_fields);
            let _ = conn::call(&self.cmd, keyed("XADD"), add).await;
            return Handed::Done;
        }
        let keys = vec![owned(self.stream.requests_key.clone()), wake];
        let mut args = vec![
            s(CONSUMER_GROUP),
            owned(self.stream.consumer.clone()),
            owned(entry.to_string()),
            owned(target),
        ];
        args.extend(wake_fields);
        match self.scripts.place.eval(&self.cmd, keys, args).await {
            Ok(v) => match v.as_i64() {
                Some(1) => Handed::Done,
                Some(-1) => Handed::NotPending,
                _ => Handed::Failed,
            },
            Err(e) => {
                tracing::debug!(error = %e, %target, "could not place a request on another member");
                Handed::Failed
            }
        }
    }

    /// A member of this system's groups was handed a request (an entry naming `group` came
    /// in this system's stream): it reads its pending list now.
    pub(super) fn wake_member(&self, group: &str) {
        // Both lanes: the entry was placed from the group's stream or from its fast lane.
        let lanes = self
            .groups()
            .values()
            .find(|h| matches!(&h.shared().role, Role::Member(x) if x.group == group))
            .map(super::group::MemberHandle::lanes);
        let Some(lanes) = lanes else { return };
        for member in lanes {
            member
                .stream
                .reread
                .store(true, std::sync::atomic::Ordering::Release);
            tokio::spawn(async move {
                let flag = Some(fred::types::ClientUnblockFlag::Timeout);
                let _ = member.reader.unblock_self(flag).await;
            });
        }
    }

    /// Writes this system's count of activations of pattern `prefix` in the pattern's
    /// directory, live for one lease (`self`: the system's proxy).
    pub(super) async fn report_activations(&self, prefix: &str) {
        self.report_count(prefix, self.activations.count_under(prefix))
            .await;
    }

    /// Writes `count` as this system's count of activations of pattern `prefix`.
    pub(super) async fn report_count(&self, prefix: &str, count: u64) {
        // Not a member any more (it left, or is shutting down): not listed.
        if !self.groups().contains_key(prefix) {
            return;
        }
        let lease = Value::Integer(self.config.lease_ttl.as_millis() as i64);
        let r = self
            .scripts
            .report
            .eval_many(
                &self.cmd,
                vec![(
                    self.keys.placement(prefix),
                    vec![
                        owned(self.system_id.clone()),
                        Value::Integer(count as i64),
                        lease,
                    ],
                )],
            )
            .await;
        if let Some(Err(e)) = r.first() {
            tracing::debug!(error = %e, "could not write the pattern's directory");
        }
    }

    /// Takes this system out of the pattern's directory (it left the group).
    pub(super) async fn unlist(&self, prefix: &str) {
        let _ = conn::call(
            &self.cmd,
            keyed("HDEL"),
            vec![
                owned(self.keys.placement(prefix)),
                owned(self.system_id.clone()),
            ],
        )
        .await;
    }

    /// The live members of pattern `prefix` and their counts of activations (`self`: the
    /// system's proxy).
    pub(super) async fn pattern_members(
        &self,
        prefix: &str,
    ) -> Result<Vec<MemberInfo>, fred::error::Error> {
        let me = self.groups().contains_key(prefix).then_some(self);
        let (members, _) = self.directory(me, prefix, None, None).await?;
        Ok(members)
    }
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
