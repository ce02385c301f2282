//! Reading the snapshots once a second, whoever is watching: the systems' tables (their
//! actors read in brief only for a new snapshot) and the plots' samples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use conclib_redis::snapshots::{PublishedSystem, SnapshotReader};

use crate::history::History;
use crate::messages::message_views;
use crate::table::{Sort, Table, Tables, brief_telling};

/// How often the view reads the snapshots.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the view's routes share: the snapshots as last read, and the plots' samples.
pub(crate) struct ViewState {
    pub(crate) reader: SnapshotReader,
    /// The last read: what `/api/systems` answers (many viewers cost Redis one read a second).
    pub(crate) latest: RwLock<Option<Result<Tables, String>>>,
    /// The last tables read, kept across a failed read (their briefs are reused).
    pub(crate) tables: Mutex<HashMap<String, Arc<Table>>>,
    pub(crate) history: Mutex<History>,
    /// The orders pages asked for lately, by when: a new table is sorted so in advance.
    pub(crate) wanted: Mutex<HashMap<(Sort, bool), Instant>>,
    pub(crate) sampling: OnceLock<()>,
    /// One sample at a time.
    pub(crate) sampler: tokio::sync::Mutex<()>,
    /// The last answer of `/api/reminders` (read on request, not sampled).
    pub(crate) reminders: crate::last_answer::LastAnswer,
    /// The last answer of `/api/executions` (read on request, not sampled).
    pub(crate) executions: crate::last_answer::LastAnswer,
}

/// How long an order a page asked for is made in advance for each new table.
const WANTED_FOR: Duration = Duration::from_secs(10);

impl ViewState {
    pub(crate) fn new(reader: SnapshotReader) -> ViewState {
        ViewState {
            reader,
            latest: RwLock::new(None),
            tables: Mutex::new(HashMap::new()),
            history: Mutex::new(History::default()),
            wanted: Mutex::new(HashMap::new()),
            sampling: OnceLock::new(),
            sampler: tokio::sync::Mutex::new(()),
            reminders: crate::last_answer::LastAnswer::default(),
            executions: crate::last_answer::LastAnswer::default(),
        }
    }

    async fn sample(&self) {
        let _one = self.sampler.lock().await;
        let read = match self.reader.systems().await {
            Ok(systems) => Ok(self.tables(systems).await),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(tables) = &read {
            self.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sample(tables);
        }
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(read);
    }

    /// The tables of `systems`: those whose snapshot did not change as they were, the
    /// others rebuilt with their briefs (read only for a new snapshot).
    async fn tables(&self, systems: Vec<PublishedSystem>) -> Tables {
        let previous = std::mem::take(&mut *self.tables.lock().unwrap_or_else(|e| e.into_inner()));
        let wanted: Vec<(Sort, bool)> = {
            let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            wanted.retain(|_, at| at.elapsed() < WANTED_FOR);
            wanted.keys().copied().collect()
        };
        let mut tables = Vec::with_capacity(systems.len());
        for system in systems {
            let old = previous.get(&system.system_id);
            let taken_at = system.snapshot.taken_at_ms;
            if let Some(old) = old
                && old.published.snapshot.taken_at_ms == taken_at
            {
                tables.push(old.clone());
                continue;
            }
            let read = if system.snapshot.omitted_actors == 0 {
                Some(Vec::new())
            } else {
                self.reader
                    .others(&system.system_id, taken_at)
                    .await
                    .ok()
                    .flatten()
            };
            let reused = old.map(|old| (old.briefs.clone(), old.briefs_taken_at));
            let messages = message_views(
                &system.snapshot.messages,
                old.map(|old| {
                    let before = &old.published.snapshot;
                    (
                        before.messages.as_slice(),
                        taken_at.saturating_sub(before.taken_at_ms),
                    )
                }),
            );
            let wanted = wanted.clone();
            // Building a table of many actors takes milliseconds: off the runtime's workers.
            let table = tokio::task::spawn_blocking(move || {
                let (briefs, briefs_taken_at) = match (read, reused) {
                    (Some(mut briefs), _) => {
                        briefs.sort_unstable_by(brief_telling);
                        (Arc::new(briefs), taken_at)
                    }
                    (None, Some(reused)) => reused,
                    (None, None) => (Arc::new(Vec::new()), 0),
                };
                let table = Table::new(system, briefs, briefs_taken_at, messages);
                for (sort, descending) in wanted {
                    table.order(sort, descending);
                }
                Arc::new(table)
            })
            .await
            .expect("building a table does not panic");
            tables.push(table);
        }
        *self.tables.lock().unwrap_or_else(|e| e.into_inner()) = tables
            .iter()
            .map(|t| (t.published.system_id.clone(), t.clone()))
            .collect();
        Arc::new(tables)
    }

    /// Starts reading the snapshots every second, once, from inside the runtime; the
    /// sampler ends when the router is dropped.
    pub(crate) async fn start_sampling(self: &Arc<Self>) {
        let mut first = false;
        self.sampling.get_or_init(|| first = true);
        if !first {
            return;
        }
        self.sample().await;
        let weak: Weak<ViewState> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { return };
                state.sample().await;
            }
        });
    }

    /// The last read, reading now if none was made yet.
    pub(crate) async fn latest(self: &Arc<Self>) -> Result<Tables, String> {
        self.start_sampling().await;
        loop {
            if let Some(latest) = self
                .latest
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return latest;
            }
            // Another request started the sampler and is still reading: wait for it (and
            // let it run, if it has not taken the lock yet).
            drop(self.sampler.lock().await);
            tokio::task::yield_now().await;
        }
    }
}
