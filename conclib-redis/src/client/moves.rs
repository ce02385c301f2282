//! Hand-over notes: each hand-over of a URN key to another system (a drain's, a
//! rebalance's, a reroute's move) is published on the namespace's channel (`{ns}:moves`,
//! `protocol::Keys::moves`) in the step that hands it, and a client
//! with a route to that URN cached sends there from then on. Without it, the client's
//! first request after the move goes to the member it cached, which passes it on (two
//! trips through Redis, and work for a member that may be draining), and only the answer
//! (its route hint) corrects the route. A note is a hint only: one missed (before the
//! subscription is up, during a reconnection, or refused by an ACL that predates the
//! channel) costs what a stale route costs. Not on a Redis Cluster, where nothing is
//! published.
//!
//! One connection of the client's own listens (`conn::subscription`); its cost on the
//! normal path is that connection, and for each note one look in the route cache.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Message;
use tokio::sync::broadcast::error::RecvError;

use super::shared::Shared;
use crate::conn::subscription::{self, Kind};

/// Fred's queue of notes between its reader and ours. A rebalance of many URNs publishes a
/// burst of notes; notes dropped when it is full (its reader starved) cost only hints.
const QUEUE: usize = 4096;

/// The connection that listens for the notes, not yet connected: `None` on a Redis
/// Cluster, or if it cannot be built (then the client runs without notes).
pub(super) fn listener(shared: &Shared) -> Option<Client> {
    if shared.clustered {
        return None;
    }
    let mut builder = shared
        .config
        .builder::<std::convert::Infallible>(shared.config.command_timeout)
        .ok()?;
    subscription::listening(&mut builder, QUEUE);
    builder.build().ok()
}

/// Connects `client` ([`listener`]), subscribes it to the notes and follows each note until
/// the client closes (the task is aborted then), subscribing again after each
/// reconnection. Gives up, logging why, if Redis refuses the subscription (`NOPERM`: an
/// ACL without the channel).
pub(super) async fn follow(shared: Arc<Shared>, client: Client) {
    // Taken before connecting: no note goes unseen once subscribed.
    let mut notes = client.message_rx();
    let mut pause = Duration::from_millis(50);
    while let Err(e) = crate::conn::init_within(&[&client], shared.config.connecting()).await {
        tracing::debug!(error = %e, "the hand-over notes' connection failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    // Taken after: fred reports the first connection as a reconnection too.
    let mut reconnects = client.reconnect_rx();
    let channel = shared.keys.moves();
    match subscription::subscribe(&client, &channel, Kind::Channel).await {
        Ok(()) => {}
        Err(e) if crate::conn::error_code_is(&e, "NOPERM") => {
            tracing::warn!(
                error = %e,
                channel,
                "not subscribed to the hand-over notes (the ACL lacks the channel): requests for a moved URN are passed on by its previous holder"
            );
            let _ = client.quit().await;
            return;
        }
        // The connection lost meanwhile: subscribed once it is back.
        Err(_) => subscription::resubscribe(&client, &channel, Kind::Channel).await,
    }
    let urn_prefix = shared.keys.urn("");
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Ok(note) => follow_note(&shared, &note, &urn_prefix),
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "hand-over notes missed (the client's runtime was busy)");
                }
                Err(RecvError::Closed) => return,
            },
            reconnected = reconnects.recv() => match reconnected {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    subscription::resubscribe(&client, &channel, Kind::Channel).await;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// One note: `target \n {ns}:urn:{urn}` (a note of another form is ignored).
fn follow_note(shared: &Shared, note: &Message, urn_prefix: &str) {
    let Some(text) = crate::conn::as_bytes(&note.value) else {
        return;
    };
    let Some(split) = text.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (Ok(target), Ok(key)) = (
        std::str::from_utf8(&text[..split]),
        std::str::from_utf8(&text[split + 1..]),
    ) else {
        return;
    };
    if let Some(urn) = key.strip_prefix(urn_prefix) {
        shared.follow_move(urn, target);
    }
}
