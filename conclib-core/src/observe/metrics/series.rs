//! The recorder's handles for the actor metrics' series, kept per label set: an actor's
//! first message, and its first message of each type, take them from here instead of
//! asking the recorder again.
//!
//! Asking the recorder for a handle (`metrics::counter!` with labels) builds a `Key`, hashes
//! it, and compares it label by label with the series the recorder has (sorting the labels
//! of both): about 10,700 instructions for a message type's four handles, and 3,700 for an
//! actor's metrics as a whole, its own two handles among them (callgrind, docs/bench-log.md
//! "The metrics-on ring by the number of actors, continued"),
//! at the first message of every actor that records, and again at the first message after
//! each hibernation. Every unnamed actor of a type shares its series (`urn=""`), so after
//! the first, those are the same handles each time: here they are cloned from a map.
//!
//! Kept for the life of the process, as the recorder keeps the series (module docs,
//! "Cardinality": at most one `urn` label per distinct URN up to the limit). Keyed by the
//! recorder in effect too (its address), so that a recorder installed after
//! [`enable`](super::enable) gets its own handles instead of the no-op recorder's.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use metrics::{Counter, Gauge, Histogram, Label};

/// One message type's handles at one actor (its labels and `message`).
#[derive(Clone)]
pub(super) struct MessageSeries {
    pub(super) handled: Counter,
    pub(super) in_mailbox: Histogram,
    pub(super) handling: Histogram,
    pub(super) errors: Counter,
}

/// An actor's own handles (its labels).
#[derive(Clone)]
pub(super) struct ActorSeries {
    pub(super) depth: Gauge,
    pub(super) skipped: Counter,
}

/// Which series: the recorder's address, the actor type's name and URN label, and the
/// message type's name (`None`: the actor's own). Names by address and length: a name
/// found at two addresses (the same type in two codegen units) has two entries with the
/// same handles, which is only a duplicate.
#[derive(PartialEq, Eq, Hash)]
struct SeriesKey {
    recorder: usize,
    actor: (usize, usize),
    urn: String,
    message: Option<(usize, usize)>,
}

type Kept<T> = Mutex<Option<HashMap<SeriesKey, T>>>;

static ACTORS: Kept<ActorSeries> = Mutex::new(None);
static MESSAGES: Kept<MessageSeries> = Mutex::new(None);

fn name_key(name: &'static str) -> (usize, usize) {
    (name.as_ptr() as usize, name.len())
}

/// The handles kept in `kept` for `actor` (its type's name), `labels` (its `actor` and
/// `urn` labels) and `message`, made by `make` the first time.
fn kept<T: Clone>(
    kept: &Kept<T>,
    actor: &'static str,
    labels: &[Label; 2],
    message: Option<&'static str>,
    make: impl FnOnce() -> T,
) -> T {
    let key = SeriesKey {
        // The recorder in effect: a thin pointer to it.
        recorder: metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize),
        actor: name_key(actor),
        urn: labels[1].value().to_owned(),
        message: message.map(name_key),
    };
    let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashMap::new);
    if let Some(found) = kept.get(&key) {
        return found.clone();
    }
    let made = make();
    kept.insert(key, made.clone());
    made
}

/// An actor's own handles (`actor`: its type's name; `labels`: its `actor` and `urn`
/// labels).
pub(super) fn actor(actor: &'static str, labels: &[Label; 2]) -> ActorSeries {
    kept(&ACTORS, actor, labels, None, || ActorSeries {
        depth: metrics::gauge!("conclib_actor_mailbox_depth", labels.iter()),
        skipped: metrics::counter!("conclib_actor_asks_skipped_total", labels.iter()),
    })
}

/// The handles of message type `name` at an actor (`actor` and `labels` as for
/// [`actor`]).
pub(super) fn message(
    actor: &'static str,
    labels: &[Label; 2],
    name: &'static str,
) -> MessageSeries {
    kept(&MESSAGES, actor, labels, Some(name), || {
        let [actor, urn] = labels.clone();
        let labels = [actor, urn, Label::new("message", name)];
        MessageSeries {
            handled: metrics::counter!("conclib_actor_messages_handled_total", labels.iter()),
            in_mailbox: metrics::histogram!("conclib_actor_mailbox_seconds", labels.iter()),
            handling: metrics::histogram!("conclib_actor_handling_seconds", labels.iter()),
            errors: metrics::counter!("conclib_actor_handler_errors_total", labels.iter()),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{
        CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// A recorder that makes a new metric at every registration and lists what was
    /// registered (name and labels).
    #[derive(Default)]
    struct Registrations(Mutex<Vec<(String, Arc<Cell>)>>);

    struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }
    impl GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, _: f64) {}
    }
    impl HistogramFn for Cell {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Registrations {
        fn register(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let cell = Arc::new(Cell(AtomicU64::new(0)));
            self.0.lock().unwrap().push((
                format!("{}{{{}}}", key.name(), labels.join(",")),
                cell.clone(),
            ));
            cell
        }

        /// What the series registered as `name` holds.
        fn value(&self, name: &str) -> Option<u64> {
            let listed = self.0.lock().unwrap();
            let (_, cell) = listed.iter().find(|(n, _)| n == name)?;
            Some(cell.0.load(Ordering::Relaxed))
        }

        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl Recorder for Registrations {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.register(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.register(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.register(key))
        }
    }

    fn labels(actor: &'static str, urn: &str) -> [Label; 2] {
        [
            Label::new("actor", actor),
            Label::new("urn", urn.to_owned()),
        ]
    }

    /// A name of its own for each test (the kept handles are process-wide).
    const ACTOR: &str = "series::tests::Actor";

    #[test]
    fn a_label_set_is_registered_once_and_its_handles_shared() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, || {
            let unnamed = labels(ACTOR, "");
            let first = message(ACTOR, &unnamed, "Ping");
            assert_eq!(recorder.count(), 4);
            // Another actor of the type, unnamed: the same series, not asked again.
            let second = message(ACTOR, &labels(ACTOR, ""), "Ping");
            assert_eq!(recorder.count(), 4);
            first.handled.increment(2);
            second.handled.increment(3);
            // Both counted in the one series the recorder made.
            let handled =
                format!("conclib_actor_messages_handled_total{{actor={ACTOR},urn=,message=Ping}}");
            assert_eq!(recorder.value(&handled), Some(5));

            // Another message type, another URN label, the actor's own: series of their own.
            let _ = message(ACTOR, &unnamed, "Pong");
            assert_eq!(recorder.count(), 8);
            let _ = message(ACTOR, &labels(ACTOR, "urn:a"), "Ping");
            assert_eq!(recorder.count(), 12);
            let _ = actor(ACTOR, &unnamed);
            assert_eq!(recorder.count(), 14);
            let _ = actor(ACTOR, &unnamed);
            assert_eq!(recorder.count(), 14);
            let named = format!(
                "conclib_actor_messages_handled_total{{actor={ACTOR},urn=urn:a,message=Ping}}"
            );
            assert_eq!(recorder.value(&named), Some(0));
        });
    }

    #[test]
    fn another_recorder_gets_handles_of_its_own() {
        const OTHER: &str = "series::tests::Other";
        let before = Registrations::default();
        let counted = metrics::with_local_recorder(&before, || {
            let handles = message(OTHER, &labels(OTHER, ""), "Ping");
            handles.handled.increment(1);
            before.count()
        });
        assert_eq!(counted, 4);
        // A recorder in effect later (as one installed after `enable`): asked again.
        let after = Registrations::default();
        metrics::with_local_recorder(&after, || {
            let _ = message(OTHER, &labels(OTHER, ""), "Ping");
        });
        assert_eq!(after.count(), 4);
        drop(before);
    }
}
