//! [`Activator`]: the builder [`ProxyHandle::activate`](crate::ProxyHandle::activate)
//! returns, declaring a URN pattern this system activates actors for. Starting it joins the
//! pattern's group (`join.rs`); the activations themselves are the scale-out room's
//! (`scale/activation.rs`, `scale/passivation.rs`).

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use conclib_core::{Actor, ActorSystem};

use super::join::join_group;
use super::scale::activations::{Activation, MakeFn, Pattern};
use super::scale::group::GroupOf;
use super::scale::placement_rule::Placement;
use super::shared::Shared;
use crate::error::ServeError;

/// Declares a URN pattern this system activates actors for; from
/// [`ProxyHandle::activate`]. `.await` it (or call [`start`](Self::start)).
///
/// [`ProxyHandle::activate`]: crate::ProxyHandle::activate
#[must_use = "an activator does nothing until awaited"]
pub struct Activator<'a> {
    shared: &'a Arc<Shared>,
    pattern: Result<Pattern, ServeError>,
}

impl fmt::Debug for Activator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activator")
            .field("prefix", &self.pattern.as_ref().map(|p| p.prefix.as_str()))
            .finish_non_exhaustive()
    }
}

/// The default idle time before an activation is passivated.
pub const DEFAULT_PASSIVATE_AFTER: Duration = Duration::from_secs(600);

impl<'a> Activator<'a> {
    pub(in crate::proxy) fn new<A, F, Fut, E>(
        shared: &'a Arc<Shared>,
        pattern: &str,
        make: F,
    ) -> Self
    where
        A: Actor,
        F: Fn(Activation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let make: MakeFn = Box::new(move |system: ActorSystem, act: Activation| {
            let urn = act.urn.clone();
            let made = make(act);
            Box::pin(async move {
                let actor = made.await.map_err(|e| e.to_string())?;
                system
                    .build(actor)
                    .urn(urn)
                    .spawn()
                    .await
                    .map(|r| r.to_dyn())
                    .map_err(|e| e.to_string())
            })
        });
        let pattern = parse_pattern(pattern).map(|prefix| Pattern {
            prefix,
            remote: A::REMOTE,
            make,
            idle: Some(DEFAULT_PASSIVATE_AFTER),
            placement: Placement::default(),
            rebalance: false,
            rebalancing: Default::default(),
            joined_meanwhile: Default::default(),
            moved_at: Default::default(),
            limits: Default::default(),
            reporting: Default::default(),
            last_look: Default::default(),
        });
        Activator { shared, pattern }
    }

    /// Passivates an activation after this long without a request through Redis (and with
    /// an empty mailbox). Default [`DEFAULT_PASSIVATE_AFTER`] (10 minutes).
    pub fn passivate_after(mut self, idle: Duration) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.idle = Some(idle);
        }
        self
    }

    /// Which member of the pattern's group activates a URN nobody holds yet: see
    /// [`Placement`]. Default [`Placement::Spread`] (the member with the fewest
    /// activations of the pattern).
    ///
    /// ```no_run
    /// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
    /// # use conclib_redis::{ProxyConfig, start_proxy, scale::Placement};
    /// # struct Cart;
    /// # impl Actor for Cart { const REMOTE: &'static [ExposedMessage] = &[]; }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = start_proxy(&ActorSystem::new("web-1"), &ProxyConfig::default()).await?;
    /// proxy
    ///     .activate("cart:{id}", |_a| async { Ok::<_, String>(Cart) })
    ///     .placement(Placement::PreferAsker)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn placement(mut self, placement: Placement) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.placement = placement;
        }
        self
    }

    /// Moves activations to members that have fewer: when a member joins (it tells the
    /// others at once), and every third of a lease, a member with
    /// more than its share of the pattern's activations (the total over the live members of
    /// the directory, divided evenly, rounded up) passivates the excess, least recently used
    /// first and only those with nothing queued (gracefully: `on_stop` may save, or carry
    /// the state with [`StateStore::dehydrate`](crate::scale::StateStore::dehydrate)), and
    /// gives each one's URN key to the member with the fewest: its next request activates it
    /// there, so a member that joins takes its share of URNs that are asked. A request that
    /// meets an activation stopping for this is read again, not answered with an error.
    /// While two builds serve (a rolling upgrade), a member shares with the members of its
    /// own build or a newer one only (README, "Upgrading a running cluster"). Default off.
    ///
    /// ```no_run
    /// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
    /// # use conclib_redis::{ProxyConfig, start_proxy};
    /// # struct Cart;
    /// # impl Actor for Cart { const REMOTE: &'static [ExposedMessage] = &[]; }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = start_proxy(&ActorSystem::new("web-1"), &ProxyConfig::default()).await?;
    /// proxy
    ///     .activate("cart:{id}", |_a| async { Ok::<_, String>(Cart) })
    ///     .rebalance()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn rebalance(mut self) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.rebalance = true;
        }
        self
    }

    /// At most `max` requests pending (read and not yet answered) for each URN of the
    /// pattern; one more is refused at once with `Overloaded` (an ask is answered, a tell
    /// dropped and counted). Beats [`Overload::max_pending_per_urn`] of the config; a URN's
    /// own limit ([`ProxyHandle::set_max_pending`]) beats both.
    ///
    /// [`Overload::max_pending_per_urn`]: crate::overload::Overload::max_pending_per_urn
    /// [`ProxyHandle::set_max_pending`]: crate::ProxyHandle::set_max_pending
    pub fn max_pending_per_urn(mut self, max: u64) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.limits.max_pending_per_urn = Some(max.max(1));
        }
        self
    }

    /// At most `max` requests pending for all the pattern's URNs together, in this system;
    /// one more is refused as for [`max_pending_per_urn`](Self::max_pending_per_urn).
    pub fn max_pending(mut self, max: u64) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.limits.max_pending = Some(max.max(1));
        }
        self
    }

    /// Never passivates idle activations (they stop with the system, or when another
    /// system takes their URN).
    pub fn never_passivate(mut self) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.idle = None;
        }
        self
    }

    /// Registers the pattern and joins its group; returns once this system reads the
    /// group's stream.
    ///
    /// # Errors
    /// [`ServeError::Invalid`] for a pattern that is not `prefix:{id}`;
    /// [`ServeError::UrnInUse`], [`ServeError::Unavailable`] as for
    /// [`ProxyHandle::join`].
    ///
    /// [`ProxyHandle::join`]: crate::ProxyHandle::join
    pub async fn start(self) -> Result<(), ServeError> {
        let pattern = self.pattern?;
        let prefix = pattern.prefix.clone();
        let shared = self.shared;
        if pattern.limits.max_pending_per_urn.is_some() || pattern.limits.max_pending.is_some() {
            shared.admission.limits_set();
        }
        shared.activations.add_pattern(pattern);
        let joined = join_group(shared, GroupOf::Pattern(&prefix)).await;
        if joined.is_err() {
            shared.activations.remove_pattern(&prefix);
        }
        joined
    }
}

impl<'a> IntoFuture for Activator<'a> {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

/// `prefix:{id}` → `prefix:`.
pub(in crate::proxy) fn parse_pattern(pattern: &str) -> Result<String, ServeError> {
    let invalid = |why: &str| {
        ServeError::Invalid(format!(
            "invalid URN pattern {pattern:?}: {why} (write it as `prefix:{{id}}`, e.g. `user:{{id}}`)"
        ))
    };
    let prefix = pattern
        .strip_suffix("{id}")
        .ok_or_else(|| invalid("it does not end with {id}"))?;
    if prefix.len() < 2 || !prefix.ends_with(':') {
        return Err(invalid(
            "the part before {id} must be a non-empty prefix ending in ':'",
        ));
    }
    if conclib_core::validate_urn(&format!("{prefix}x")).is_err() {
        return Err(invalid("the prefix is not valid in a URN"));
    }
    Ok(prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_pattern;
    use crate::protocol::pattern_prefix;

    #[test]
    fn patterns_are_a_prefix_then_id() {
        assert_eq!(parse_pattern("user:{id}").unwrap(), "user:");
        assert_eq!(parse_pattern("shop:cart:{id}").unwrap(), "shop:cart:");
        for bad in [
            "user",
            "user:{}",
            "{id}",
            ":{id}",
            "user{id}",
            "us er:{id}",
            "user:{id}x",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clients_look_up_the_prefix_before_the_last_colon() {
        assert_eq!(pattern_prefix("user:42"), Some("user:"));
        assert_eq!(pattern_prefix("shop:cart:7"), Some("shop:cart:"));
        assert_eq!(pattern_prefix("user:"), None);
        assert_eq!(pattern_prefix("counter"), None);
    }
}
