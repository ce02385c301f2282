//! What a [`ProxyHandle`] changes of its overload limits at run time: the activation cap
//! (`scale/eviction.rs`) and one URN's limit of pending requests (`serve/admission.rs`).

use super::handle::ProxyHandle;

impl ProxyHandle {
    /// Sets the activation cap (`None`: no cap) from now on: past it, activations are
    /// evicted by the configured [`Eviction`](crate::overload::Eviction) at once, down to about
    /// 98.5% of the cap (see [`Overload::activation_cap`](crate::overload::Overload::activation_cap)).
    ///
    /// ```no_run
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) {
    /// proxy.set_activation_cap(Some(50_000));
    /// assert_eq!(proxy.activation_cap(), Some(50_000));
    /// # }
    /// ```
    pub fn set_activation_cap(&self, cap: Option<usize>) {
        self.shared.activations.cap.set(cap);
        super::scale::passivation::evict_over_cap(&self.shared);
    }

    /// The activation cap now.
    #[must_use]
    pub fn activation_cap(&self) -> Option<usize> {
        self.shared.activations.cap.get()
    }

    /// Sets (`Some`) or removes (`None`) the limit of requests pending for one URN, which
    /// beats its pattern's and the config's
    /// ([`Overload::max_pending_per_urn`](crate::overload::Overload::max_pending_per_urn)).
    pub fn set_max_pending(&self, urn: &str, max: Option<u64>) {
        self.shared.admission.set_urn_limit(urn, max);
    }
}
