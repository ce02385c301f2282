//! An actor's per-message-type figures, counted in place by its task and read in place by
//! snapshots: no pass-on, no lock.
//!
//! The actor's task counts each message it handled (recording on) in its type's
//! [`LiveTally`]: counters that only that task writes (a load and a store, no locked
//! instruction) and that a snapshot reads. The tallies are listed in the cell's rarely
//! written statistics (under their lock: a new message type adds one, a snapshot reads
//! them); the task keeps its own `Arc` of each it counts in. Before, the task kept these counts in its own memory
//! and passed them on under the statistics' lock now and then: at 100,000 actors asked
//! now and then, that pass-on was a third to a half of what metrics added to an ask, and
//! an idle actor needed a timer to pass on what it held back (docs/bench-log.md, "Per-message
//! figures counted in place").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{HANDLING_BUCKETS, Tally};

/// One message type's figures, written by the actor's task alone.
pub(crate) struct LiveTally {
    name: &'static str,
    errors: AtomicU64,
    /// Handling times by bucket ([`Tally::bucket_of`]); their sum is the messages handled
    /// (each message counts in exactly one), so a reader's count and buckets always agree.
    buckets: [AtomicU64; HANDLING_BUCKETS],
}

impl LiveTally {
    /// One message handled, its handling time in `bucket` ([`Tally::bucket_of`]; one past
    /// the last counts in the last). For the actor's task alone: two writers would lose
    /// counts (a load and a store, not an atomic addition, which costs a locked
    /// instruction a message).
    #[inline]
    pub(crate) fn count(&self, bucket: usize, failed: bool) {
        let n = &self.buckets[bucket.min(HANDLING_BUCKETS - 1)];
        n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if failed {
            self.errors
                .store(self.errors.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// What it counted so far.
    fn read(&self) -> Tally {
        let mut tally = Tally::new(self.name);
        for (to, from) in tally.buckets.iter_mut().zip(&self.buckets) {
            *to = from.load(Ordering::Relaxed);
        }
        tally.handled = tally.buckets.iter().sum();
        tally.errors = self.errors.load(Ordering::Relaxed);
        tally
    }
}

/// An actor's [`LiveTally`]s, in its rarely written statistics (under their lock): 8 bytes
/// in every actor, a tally (224 bytes and an `Arc`'s 16) for each message type it handled
/// while recording.
#[derive(Default)]
pub(crate) struct Tallies {
    /// In the order added; `None`: none yet.
    #[allow(clippy::box_collection)] // boxed: 8 bytes for the many actors that keep none
    list: Option<Box<Vec<Arc<LiveTally>>>>,
}

impl Tallies {
    /// The tally of message type `name` (compared by address, then by text), added if it
    /// has none.
    pub(crate) fn of(&mut self, name: &'static str) -> Arc<LiveTally> {
        let list = self.list.get_or_insert_with(Box::default);
        if let Some(found) = list
            .iter()
            .find(|t| std::ptr::eq(t.name, name) || t.name == name)
        {
            return found.clone();
        }
        let added = Arc::new(LiveTally {
            name,
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        });
        list.push(added.clone());
        added
    }

    /// What they counted so far, the last added first, for a snapshot; `None` with no
    /// tally.
    #[allow(clippy::box_collection)] // boxed: 8 bytes for the many actors that keep none
    pub(crate) fn read(&self) -> Option<Box<Vec<Tally>>> {
        let list = self.list.as_deref().filter(|l| !l.is_empty())?;
        Some(Box::new(list.iter().rev().map(|t| t.read()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tally per message type, found again by name (the same text at another address
    /// too); each counts its own messages, with the count the sum of the buckets.
    #[test]
    fn each_message_type_counts_in_its_own_tally() {
        let mut tallies = Tallies::default();
        assert!(tallies.read().is_none(), "none before a message");
        let ping = tallies.of("Ping");
        let pong = tallies.of("Pong");
        let again = String::from("Ping").leak();
        assert!(Arc::ptr_eq(&tallies.of(again), &ping), "found by its text");
        ping.count(0, false);
        ping.count(0, true);
        ping.count(HANDLING_BUCKETS + 5, false);
        pong.count(3, false);
        let read = tallies.read().unwrap();
        let figures: Vec<(&str, u64, u64, u64, u64, u64)> = read
            .iter()
            .map(|t| {
                let last = t.buckets[HANDLING_BUCKETS - 1];
                (
                    t.name,
                    t.handled,
                    t.errors,
                    t.buckets[0],
                    t.buckets[3],
                    last,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [("Pong", 1, 0, 0, 1, 0), ("Ping", 3, 1, 2, 0, 1)],
            "the last added first"
        );
    }

    /// A reader on another thread (under the lock the cell keeps them in) sees every count
    /// the writer made before it last published, and never more than it made.
    #[test]
    fn a_reader_on_another_thread_sees_the_counts_grow() {
        let tallies = Arc::new(std::sync::Mutex::new(Tallies::default()));
        let writer = {
            let tallies = tallies.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let name = if i % 2 == 0 { "Even" } else { "Odd" };
                    let tally = tallies.lock().unwrap().of(name);
                    tally.count((i % 7) as usize, i % 3 == 0);
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let seen: u64 = tallies
                .lock()
                .unwrap()
                .read()
                .map_or(0, |r| r.iter().map(|t| t.handled).sum());
            assert!(seen >= last && seen <= 20_000, "{last} then {seen}");
            last = seen;
        }
        writer.join().unwrap();
        let read = tallies.lock().unwrap().read().unwrap();
        assert_eq!(read.iter().map(|t| t.handled).sum::<u64>(), 20_000);
        assert_eq!(read.iter().map(|t| t.errors).sum::<u64>(), 6_667);
        assert_eq!(read.len(), 2);
    }

    /// Tallies added from two threads at once all stay in the list (none lost to the
    /// other thread's addition), each with its count.
    #[test]
    fn tallies_added_from_two_threads_at_once_all_stay() {
        let tallies = Arc::new(std::sync::Mutex::new(Tallies::default()));
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let adders: Vec<_> = (0..2)
            .map(|t| {
                let (tallies, start) = (tallies.clone(), start.clone());
                std::thread::spawn(move || {
                    let names: Vec<&'static str> =
                        (0..500).map(|i| &*format!("T{t}-{i}").leak()).collect();
                    start.wait();
                    for name in names {
                        let tally = tallies.lock().unwrap().of(name);
                        tally.count(1, false);
                    }
                })
            })
            .collect();
        for adder in adders {
            adder.join().unwrap();
        }
        let read = tallies.lock().unwrap().read().unwrap();
        assert_eq!(read.len(), 1_000);
        assert!(read.iter().all(|t| t.handled == 1 && t.buckets[1] == 1));
    }
}
