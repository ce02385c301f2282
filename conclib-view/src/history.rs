//! The plots' samples: one a second of each actor published in full, and of each other
//! actor a page showed in the last minute, for five minutes; and `/api/history`, which sends
//! a viewer only the samples it does not have yet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::table::Table;

/// How many samples of each actor the view keeps for the plots (five minutes, one a second).
const HISTORY: usize = 300;
/// How long an actor a page showed keeps its plots sampled, and how many such actors at most.
const WATCH_FOR: Duration = Duration::from_secs(60);
const MAX_WATCHED: usize = 10_000;

/// One actor's recent samples, oldest first; the last one is sample number `last`.
#[derive(Debug, Clone, Default)]
struct Series {
    last: u64,
    mailbox: VecDeque<usize>,
    rate: VecDeque<f64>,
}

/// The plots' samples of every system's actors.
#[derive(Default)]
pub(crate) struct History {
    /// Samples taken so far.
    seq: u64,
    /// By `system_id/actor_id`.
    series: HashMap<String, Series>,
    /// Actors a page showed, by system and id: when last shown.
    watched: HashMap<(String, u64), Instant>,
}

/// The key of an actor's series: `system_id/actor_id`.
fn key(system: &str, id: u64) -> String {
    format!("{system}/{id}")
}

impl History {
    /// One more sample of every actor published in full, and of every actor watched.
    pub(crate) fn sample(&mut self, tables: &[Arc<Table>]) {
        let history = self;
        history.seq += 1;
        let seq = history.seq;
        let now = Instant::now();
        history
            .watched
            .retain(|_, shown| now.duration_since(*shown) < WATCH_FOR);
        let mut watched: HashMap<&str, HashSet<u64>> = HashMap::new();
        for (system, id) in history.watched.keys() {
            watched.entry(system.as_str()).or_default().insert(*id);
        }
        let mut series = HashMap::with_capacity(history.series.len());
        for table in tables {
            let system = table.published.system_id.as_str();
            let mut push = |id: u64, mailbox: usize, rate: f64| {
                let key = key(system, id);
                let mut s = history.series.remove(&key).unwrap_or_default();
                s.last = seq;
                s.mailbox.push_back(mailbox);
                s.rate.push_back(rate);
                if s.mailbox.len() > HISTORY {
                    s.mailbox.pop_front();
                    s.rate.pop_front();
                }
                series.insert(key, s);
            };
            for actor in &table.full {
                push(actor.id, actor.mailbox_len, actor.rate);
            }
            if let Some(ids) = watched.get(system) {
                for brief in table.briefs.iter() {
                    if ids.contains(&brief.id) && !table.full_ids.contains(&brief.id) {
                        push(brief.id, brief.mailbox_len, brief.rate);
                    }
                }
            }
        }
        // Actors that stopped, or are neither published in full nor watched, leave the plots.
        history.series = series;
    }

    /// A page showed the actor `id` of `system` (listed in brief) `now`: its plots are
    /// sampled for a while (unless too many actors are already).
    pub(crate) fn shown(&mut self, system: &str, id: u64, now: Instant) {
        let key = (system.to_owned(), id);
        if self.watched.len() < MAX_WATCHED || self.watched.contains_key(&key) {
            self.watched.insert(key, now);
        }
    }
}

#[derive(Serialize)]
struct HistoryOut<'a> {
    seq: u64,
    series: HashMap<&'a str, SeriesOut>,
}

#[derive(Serialize)]
struct SeriesOut {
    from: u64,
    mailbox: Vec<usize>,
    rate: Vec<f64>,
}

/// `series`'s samples after `since`, or all of them.
fn series_since(series: &Series, since: Option<u64>) -> SeriesOut {
    let len = series.mailbox.len();
    let first = series.last + 1 - len as u64;
    let skip = since.map_or(0, |since| {
        since
            .saturating_add(1)
            .saturating_sub(first)
            .min(len as u64)
    }) as usize;
    SeriesOut {
        from: first + skip as u64,
        mailbox: series.mailbox.iter().skip(skip).copied().collect(),
        // Plots need no more than two decimals.
        rate: series
            .rate
            .iter()
            .skip(skip)
            .map(|r| (r * 100.0).round() / 100.0)
            .collect(),
    }
}

impl History {
    /// What `/api/history` answers, as JSON: every series from its start, or those named in
    /// `keys` (from `since`) and in `full` (whole).
    pub(crate) fn to_json(
        &self,
        since: Option<u64>,
        keys: &[impl AsRef<str>],
        full: &[impl AsRef<str>],
    ) -> serde_json::Result<Vec<u8>> {
        let mut out = HistoryOut {
            seq: self.seq,
            series: HashMap::new(),
        };
        if keys.is_empty() && full.is_empty() {
            for (key, series) in &self.series {
                out.series.insert(key, series_since(series, None));
            }
        } else {
            let asked = keys
                .iter()
                .map(|k| (k.as_ref(), since))
                .chain(full.iter().map(|k| (k.as_ref(), None)));
            for (key, since) in asked {
                if let Some((key, series)) = self.series.get_key_value(key) {
                    out.series.insert(key, series_since(series, since));
                }
            }
        }
        serde_json::to_vec(&out)
    }
}
