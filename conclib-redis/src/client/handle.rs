//! The [`ProxyClient`] users hold: its shared state, and what stops the client's tasks
//! when the last clone is dropped.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fred::prelude::*;

use super::io::close_reader;
use super::shared::Shared;
use crate::conn::{self, keyed, owned};

/// A connection to the actors that proxies serve through Redis, for processes without an
/// actor system (a web server's workers, scripts, other services).
///
/// Cloning is cheap and clones share everything: one client serves any number of concurrent
/// asks from any number of tasks over [`ProxyConfig::pool_size`] command connections plus one
/// connection that reads all replies (one reply list per client, dispatched by request id),
/// and, outside a Redis Cluster, one that listens for the hand-over notes of URNs that move
/// (its cached routes follow them). A lone ask's request leaves at once; requests made
/// while the client's writes to that system wait for Redis (two at most) leave together
/// when one is back, in commands of up to 32, on any runtime.
///
/// ```no_run
/// # use conclib_core::Message;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Add(u64);
/// # impl Message for Add { type Response = u64; type Error = String; fn name() -> &'static str { "Add" } }
/// # impl conclib_core::MessageDecl for Add { type WireError = String; }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use conclib_core::AskError;
/// use conclib_redis::{ProxyClient, ProxyConfig};
/// use std::time::Duration;
///
/// let client = ProxyClient::connect(&ProxyConfig::from_env()?).await?;
/// let total: u64 = client.ask("counter", Add(2)).await?;
/// match client.ask("counter", Add(u64::MAX)).timeout(Duration::from_millis(200)).await {
///     Ok(total) => println!("{total}"),
///     Err(AskError::Handler(message)) => println!("the counter refused: {message}"),
///     Err(other) => println!("{other}"),
/// }
/// client.tell("counter", Add(1)).await?;
/// # Ok(()) }
/// ```
///
/// [`ProxyConfig::pool_size`]: crate::ProxyConfig::pool_size
#[derive(Clone)]
pub struct ProxyClient {
    pub(super) shared: Arc<Shared>,
    pub(super) _guard: Arc<Guard>,
}

/// Stops the reply reader and the connection watchers, and closes the connections, when the
/// last clone is dropped.
pub(super) struct Guard {
    pub(super) shared: Arc<Shared>,
    pub(super) reader: Client,
    /// The connection that listens for hand-over notes (`moves.rs`), if any.
    pub(super) notes: Option<Client>,
    /// The reply reader, the restart watcher, one watcher per connection, and the
    /// hand-over notes' follower.
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Guard {
    pub(super) fn stop_tasks(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.stop_tasks();
        let pool = self.shared.pool.clone();
        let reader = self.reader.clone();
        let notes = self.notes.clone();
        let reply_key = self.shared.reply_key.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = conn::call(pool.next(), keyed("DEL"), vec![owned(reply_key)]).await;
                let _ = pool.quit().await;
                if let Some(notes) = notes {
                    let _ = notes.quit().await;
                }
                close_reader(&reader).await;
            });
        }
    }
}

impl fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyClient")
            .field("namespace", &self.shared.config.namespace)
            .field("reply_key", &self.shared.reply_key)
            .finish_non_exhaustive()
    }
}
