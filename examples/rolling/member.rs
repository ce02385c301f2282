//! The members of the roll: the accounts of build 1 and build 2 and the messages they
//! answer, and the `member` role (serving, delivering reminders, draining on SIGTERM).

use std::time::Duration;

use conclib::redis::reminders::{ReminderPoller, ReminderPollerOptions, ReminderTick};
use conclib::redis::scale::{Activation, StateStore};
use conclib::redis::{ProxyClient, ProxyConfig, start_proxy};
use conclib::{ActorSystem, actor, message};
use serde::{Deserialize, Serialize};

use super::NAMESPACE;
use super::ticks::TickNotes;
use super::waits::Events;
use crate::BoxError;

/// A tell: adds one. Build 1's, without fields.
#[message(error = String)]
#[derive(Serialize, Deserialize)]
pub struct Add {}

/// Build 2's `Add`: an optional note added (its version 2). In MessagePack, the codec of
/// this run, build 1 decodes it (the note skipped) and build 2 decodes build 1's (the note
/// `None`).
#[message(name = "Add", version = 2, error = String)]
#[derive(Serialize, Deserialize)]
pub struct AddV2 {
    /// New in build 2.
    pub note: Option<String>,
}

/// The count, and how many asks the account answered (this one included).
#[message(response = (u64, u64), error = String)]
#[derive(Serialize, Deserialize)]
pub struct Total;

/// New in build 2: as [`Total`]. A build 1 member holding the URN hands it to a build 2
/// member, which answers.
#[message(response = (u64, u64), error = String)]
#[derive(Serialize, Deserialize)]
pub struct Audit;

/// An activated account of build 1: its count lives in memory and is saved at each tell;
/// how many asks it answered lives in memory only, carried to the next activation when it
/// moves (`StateStore::dehydrate` / `rehydrate`).
#[actor]
pub struct Account {
    count: u64,
    asks: u64,
    store: StateStore,
    urn: String,
    ticks: TickNotes,
    events: Events,
}

#[actor]
impl Account {
    /// Adds one, saved before it counts as handled.
    #[handle(remote)]
    async fn add(&mut self, _: Add) -> Result<(), String> {
        add_one(&self.store, &mut self.count).await
    }

    /// The count and the asks answered.
    #[handle(remote)]
    async fn total(&mut self, _: Total) -> Result<(u64, u64), String> {
        self.asks += 1;
        Ok((self.count, self.asks))
    }

    /// A reminder's tick, noted.
    #[handle(remote)]
    async fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        self.ticks.note(&self.urn, &tick)
    }

    /// Moved to another member: both counts carried (the saved one is loaded otherwise).
    #[on_stop]
    async fn carry(&mut self, _reason: &conclib::StopReason) {
        let at = super::micros_now();
        let carried = carried_word(self.store.dehydrate(&(self.count, self.asks)).await);
        self.events
            .note(&format!("STOP {} {at} {carried} {}", self.urn, self.asks));
    }
}

/// Build 2 of [`Account`]: `Add` at version 2, and `Audit`.
#[actor]
pub struct AccountV2 {
    count: u64,
    asks: u64,
    store: StateStore,
    urn: String,
    ticks: TickNotes,
    events: Events,
}

#[actor]
impl AccountV2 {
    /// Adds one, saved before it counts as handled.
    #[handle(remote)]
    async fn add(&mut self, _: AddV2) -> Result<(), String> {
        add_one(&self.store, &mut self.count).await
    }

    /// The count and the asks answered.
    #[handle(remote)]
    async fn total(&mut self, _: Total) -> Result<(u64, u64), String> {
        self.asks += 1;
        Ok((self.count, self.asks))
    }

    /// As `total`.
    #[handle(remote)]
    async fn audit(&mut self, _: Audit) -> Result<(u64, u64), String> {
        self.asks += 1;
        Ok((self.count, self.asks))
    }

    /// As build 1's.
    #[handle(remote)]
    async fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        self.ticks.note(&self.urn, &tick)
    }

    /// As build 1's.
    #[on_stop]
    async fn carry(&mut self, _reason: &conclib::StopReason) {
        let at = super::micros_now();
        let carried = carried_word(self.store.dehydrate(&(self.count, self.asks)).await);
        self.events
            .note(&format!("STOP {} {at} {carried} {}", self.urn, self.asks));
    }
}

/// One more, saved before it counts.
async fn add_one(store: &StateStore, count: &mut u64) -> Result<(), String> {
    store.save(&(*count + 1)).await.map_err(|e| e.to_string())?;
    *count += 1;
    Ok(())
}

/// What a stop's `dehydrate` did, in its `STOP` note: `carried` (the activation was moving),
/// `kept` (it was not: the next activation loads the saved count), or `failed`.
fn carried_word(r: Result<bool, conclib::redis::scale::StoreError>) -> &'static str {
    match r {
        Ok(true) => "carried",
        Ok(false) => "kept",
        Err(_) => "failed",
    }
}

/// An activation's counts: carried from the member before, else the saved count; and
/// which (`rehydrated`, `loaded`), for its `ACT` note.
async fn counts(a: &Activation) -> Result<((u64, u64), &'static str), BoxError> {
    Ok(match a.store().rehydrate::<(u64, u64)>().await? {
        Some(carried) => (carried, "rehydrated"),
        None => (
            (a.store().load::<u64>().await?.unwrap_or_default(), 0),
            "loaded",
        ),
    })
}

/// `member URL NAME BUILD TICKS_DIR`: serves `acct:{id}` as build 1 or 2, and delivers
/// reminders (noting the ticks in `TICKS_DIR`, and its accounts' moves: `waits.rs`), until SIGTERM (its poller shut down, then
/// drains, then prints `DRAINED took_ms handed handing_p99_ms longest_ms`) or until stdin
/// closes (its poller shut down, then shuts down).
pub async fn member(args: &[String]) -> Result<(), BoxError> {
    let [url, name, build, ticks_dir] = args else {
        return Err("member URL NAME BUILD TICKS_DIR".into());
    };
    let notes = TickNotes::open(ticks_dir, name)?;
    let events = Events::open(ticks_dir, name)?;
    let config = ProxyConfig::new(url)
        .with_namespace(NAMESPACE)
        .with_system_id(name)
        .with_snapshot_interval(None);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    let activator = if build == "2" {
        proxy.activate("acct:{id}", move |a: Activation| {
            let (ticks, events) = (notes.clone(), events.clone());
            async move {
                let from = super::micros_now();
                let ((count, asks), how) = counts(&a).await?;
                let urn = a.urn().to_owned();
                events.note(&format!(
                    "ACT {urn} {from} {} {how} {asks}",
                    super::micros_now()
                ));
                let store = a.into_store();
                Ok::<_, BoxError>(AccountV2 {
                    count,
                    asks,
                    store,
                    urn,
                    ticks,
                    events,
                })
            }
        })
    } else {
        proxy.activate("acct:{id}", move |a: Activation| {
            let (ticks, events) = (notes.clone(), events.clone());
            async move {
                let from = super::micros_now();
                let ((count, asks), how) = counts(&a).await?;
                let urn = a.urn().to_owned();
                events.note(&format!(
                    "ACT {urn} {from} {} {how} {asks}",
                    super::micros_now()
                ));
                let store = a.into_store();
                Ok::<_, BoxError>(Account {
                    count,
                    asks,
                    store,
                    urn,
                    ticks,
                    events,
                })
            }
        })
    };
    activator.never_passivate().await?;
    let client = ProxyClient::connect(&config).await?;
    let poller = ReminderPoller::start(&client, ReminderPollerOptions::default())?;
    println!("READY");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On a thread of its own, not the runtime's blocking pool: the runtime's drop at the
    // process's end waits for its blocking tasks, and this read returns only once the
    // driver closes stdin, which would put the driver's own timing into the member's exit.
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        let _ = closed.send(());
    });
    tokio::select! {
        _ = term.recv() => {
            // It claims no tick more, and those under way are acknowledged: the other
            // members' pollers deliver the next ones on time.
            poller.shutdown().await;
            let d = proxy.drain().await?;
            println!(
                "DRAINED {} {} {} {}",
                d.took.as_millis(),
                d.handed,
                d.handing_p99.as_millis(),
                d.longest_handing.as_millis()
            );
        }
        _ = stdin_closed => {
            poller.shutdown().await;
            proxy.shutdown().await?;
        }
    }
    client.shutdown().await;
    system.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
