//! Where a pattern's activations live: [`ProxyClient::activations`], read from the URN keys.

use std::collections::BTreeMap;

use fred::prelude::*;
use futures_util::TryStreamExt;

use super::budget::{cooperate, settle};
use super::handle::ProxyClient;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::error::{ProxyError, redis_error};

/// URN keys read per pipeline.
const BATCH: usize = 500;

impl ProxyClient {
    /// Where the activations of a URN pattern (`"user:{id}"`, or its prefix `"user:"`) live
    /// now: each system holding some, with the URNs it holds, sorted. Read from the URN keys
    /// (a `SCAN` of the namespace's URN keys matching the prefix, on every node of a
    /// cluster, then their values), so it costs a pass over those keys: an operator's view,
    /// not a call for a request's path. A URN being activated or failing over may be
    /// missing; it says where each URN was when its key was read.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use conclib_redis::{ProxyClient, ProxyConfig};
    /// let client = ProxyClient::connect(&ProxyConfig::default()).await?;
    /// for (system, urns) in client.activations("user:{id}").await? {
    ///     println!("{system}: {} activations", urns.len());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProxyError::Config`] for a pattern that is not `prefix:{id}` nor `prefix:`; Redis
    /// errors.
    pub async fn activations(
        &self,
        pattern: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, ProxyError> {
        cooperate().await;
        settle(self.read_activations(pattern).await).await
    }

    async fn read_activations(
        &self,
        pattern: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, ProxyError> {
        let prefix = pattern.strip_suffix("{id}").unwrap_or(pattern);
        if !prefix.ends_with(':') || prefix.len() < 2 || prefix.contains(['{', '}']) {
            return Err(ProxyError::Config(format!(
                "a pattern is prefix:{{id}} or prefix:, got {pattern:?}"
            )));
        }
        let shared = &self.shared;
        let key_prefix = shared.keys.urn("");
        let matching = format!("{}{}*", glob_escape(&key_prefix), glob_escape(prefix));
        let client = shared.connection()?;
        let keys: Vec<Key> = if client.is_clustered() {
            client
                .scan_cluster_buffered(matching, Some(1000), None)
                .try_collect()
                .await
        } else {
            client
                .scan_buffered(matching, Some(1000), None)
                .try_collect()
                .await
        }
        .map_err(|e| redis_error(&e))?;
        // The URNs of the pattern itself: `prefix{id}`, no further colon.
        let urns: Vec<String> = keys
            .iter()
            .filter_map(|k| k.as_str())
            .filter_map(|k| k.strip_prefix(key_prefix.as_str()))
            .filter(|urn| crate::protocol::pattern_prefix(urn) == Some(prefix))
            .map(str::to_owned)
            .collect();
        let mut by_system: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for chunk in urns.chunks(BATCH) {
            let pipeline = client.pipeline();
            for urn in chunk {
                let _ =
                    conn::call(&pipeline, keyed("GET"), vec![owned(shared.keys.urn(urn))]).await;
            }
            let values = pipeline.try_all::<Value>().await;
            for (urn, value) in chunk.iter().zip(values) {
                let value = value.map_err(|e| redis_error(&e))?;
                if let Some(system) = as_bytes(&value) {
                    by_system
                        .entry(String::from_utf8_lossy(system).into_owned())
                        .or_default()
                        .push(urn.clone());
                }
            }
        }
        for urns in by_system.values_mut() {
            urns.sort();
        }
        Ok(by_system)
    }
}

/// `s` with the characters `SCAN`'s `MATCH` gives a meaning to escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
