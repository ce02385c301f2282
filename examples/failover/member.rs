//! A member process of the failover scenario: a system that activates `acct:{id}` counters
//! (the pattern), serves the `ledger` group with its own actor, and runs a reminder poller;
//! it reports what it handled on stdout, one line each (`ACTIVATED`, `TOLD`, `NOTEFAILED`,
//! `FIRED`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib::redis::reminders::{ReminderPoller, ReminderPollerOptions, ReminderTick};
use conclib::redis::scale::{Activation, StateStore};
use conclib::redis::{Durability, ProxyClient, ProxyConfig, start_proxy};
use conclib::{ActorSystem, actor};
use serde::{Deserialize, Serialize};

use crate::BoxError;

/// The group every member serves with an actor of its own (`Ledger`'s URN).
pub const GROUP: &str = "ledger";

/// What an account's activation keeps in its store.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Saved {
    count: u64,
    turn: u64,
}

/// An activated counter: every increment is saved (fenced) before it is answered.
#[actor]
pub struct Account {
    saved: Saved,
    /// This activation's id: who answered.
    id: u64,
    store: StateStore,
}

#[actor]
impl Account {
    /// Adds one; answers (this activation's id, the count saved).
    #[handle(remote)]
    pub(crate) async fn incr(&mut self) -> Result<(u64, u64), String> {
        let next = Saved {
            count: self.saved.count + 1,
            turn: self.saved.turn + 1,
        };
        self.store.save(&next).await.map_err(|e| e.to_string())?;
        self.saved = next;
        Ok((self.id, next.count))
    }

    /// A tell: saved as a turn, then reported handled on stdout; a save that fails (its
    /// write not replicated in time, Redis away) is reported too (`NOTEFAILED`): the tell
    /// reached the actor, and its handler failed.
    #[handle(remote)]
    pub(crate) async fn note(&mut self, tell: u64) -> Result<(), String> {
        let next = Saved {
            count: self.saved.count,
            turn: self.saved.turn + 1,
        };
        if let Err(e) = self.store.save(&next).await {
            // When (the host's clock) and why, for the driver's report.
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            println!("NOTEFAILED {tell} {at} {e}");
            return Err(e.to_string());
        }
        self.saved = next;
        println!("TOLD {tell}");
        Ok(())
    }

    /// A reminder's tick: reported on stdout by its name.
    #[handle(remote)]
    pub(crate) fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        println!("FIRED {}", tick.name());
        Ok(())
    }
}

/// A member's actor in the `ledger` group: tells reported handled, asks answered with the
/// member's name.
#[actor(urn = "ledger")]
pub struct Ledger {
    name: String,
}

#[actor]
impl Ledger {
    /// Answers which member took the ask.
    #[handle(remote)]
    pub(crate) fn whose(&mut self) -> String {
        self.name.clone()
    }

    /// A tell to the group: reported handled on stdout.
    #[handle(remote)]
    pub(crate) fn record(&mut self, tell: u64) {
        println!("TOLD {tell}");
    }
}

/// The durability level named on the command line: `primary`, `replicas` (WAIT 1) or
/// `replicas:N` (WAIT N).
pub fn durability(name: &str) -> Durability {
    // `replicas` waits for one replica, `replicas:N` for N.
    match name.strip_prefix("replicas") {
        Some(n) => Durability::Replicas {
            n: n.strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            timeout: Duration::from_millis(500),
        },
        None => Durability::Primary,
    }
}

/// `member URL NAME DURABILITY`: serves `acct:{id}` and the `ledger` group and fires
/// reminders until stdin closes.
pub async fn member(url: &str, name: &str, level: &str) -> Result<(), BoxError> {
    let mut config = ProxyConfig::new(url)
        .with_namespace("failover")
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.durability = durability(level);
    // Each command fails within a call's time while Redis fails over.
    config.command_timeout = Duration::from_secs(2);
    let system = ActorSystem::new(name);
    system
        .spawn(Ledger {
            name: name.to_owned(),
        })
        .await?;
    let proxy = start_proxy(&system, &config).await?;
    proxy.join(GROUP).await?;
    let ids = Arc::new(AtomicU64::new(u64::from(std::process::id()) << 20));
    proxy
        .activate("acct:{id}", move |a: Activation| {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let saved = a.store().load::<Saved>().await?.unwrap_or_default();
                // When it loaded: only answers given before count against what it loaded.
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                println!("ACTIVATED {} {id} {} {at}", a.urn(), saved.count);
                Ok::<_, BoxError>(Account {
                    saved,
                    id,
                    store: a.into_store(),
                })
            }
        })
        .never_passivate()
        .await?;
    let client = ProxyClient::connect(&config).await?;
    let poller = ReminderPoller::start(&client, ReminderPollerOptions::default())?;
    println!("READY");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let _ = stdin_closed.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        poller.shutdown().await;
        client.shutdown().await;
        let _ = proxy.shutdown().await;
    })
    .await;
    Ok(())
}
