//! What one actor measures of its messages while recording is on: kept in its own task, in
//! the clock's ticks, and handed to the recorder a batch at a time.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};

use super::clock::{Clock, clock};
use super::series::{self, MessageSeries};
use super::{MeasuredActor, SECONDS_THRESHOLDS, actor_labels, seconds};
use crate::observe::snapshot::Tally;
use crate::observe::snapshot::tallies::LiveTally;
use std::sync::Arc;

/// One message type's handles, what the actor handled of it since it last gave the
/// recorder its figures (`unrecorded`, `unrecorded_errors`), and its tally in the actor's
/// statistics (counted at each message, read by snapshots).
///
/// Written at every message: on cache lines of its own, as [`ActorMetrics`] is (the first
/// type's inside the actor's block, the others' each in a [`Lined`]).
struct PerMessage {
    name: &'static str,
    /// The address of the envelope vtable of the last message of this type that came with
    /// one naming its type ([`Envelope::type_key`](crate::run::envelope::Envelope::type_key)),
    /// else 0: the next message with that vtable is found without asking its name.
    key: usize,
    /// Its series' handles: `handled`, `in_mailbox`, `handling`, `errors`.
    series: MessageSeries,
    unrecorded: u64,
    unrecorded_errors: u64,
    /// Its type's [`LiveTally`] in the actor's statistics, kept here so that a message
    /// finds it without searching the list.
    tally: Arc<LiveTally>,
    /// With the recorder's buckets known ([`set_seconds_buckets`](super::set_seconds_buckets)):
    /// this batch's samples, added up per bucket (else they wait in
    /// [`ActorMetrics::unrecorded`]). Made at the first batch of more than one message: a
    /// batch of one goes to the recorder as it is, and most actors (asked one message at a
    /// time) never need one (640 bytes in three blocks aligned to 128, which cost an
    /// actor's first message of a type more than its series' handles; docs/bench-log.md, "An
    /// actor's first message with metrics on").
    binned: Option<Box<Binned>>,
}

impl PerMessage {
    /// A message's samples, added up in their buckets (the recorder's buckets known).
    /// Always inlined: called at every message of a batch but its first.
    #[inline(always)]
    fn bin(&mut self, thresholds: &[u64], measured: Measured) {
        let binned = match &mut self.binned {
            Some(binned) => binned,
            None => self.binned.insert(Binned::new(thresholds)),
        };
        if measured.in_mailbox != UNSTAMPED {
            binned.in_mailbox.add(thresholds, measured.in_mailbox);
        }
        binned.handling.add(thresholds, measured.handling);
    }

    /// A message's samples to the recorder as they are.
    fn record(&self, clock: Clock, measured: Measured) {
        if measured.in_mailbox != UNSTAMPED {
            self.series
                .in_mailbox
                .record(seconds(clock.nanos(measured.in_mailbox)));
        }
        self.series
            .handling
            .record(seconds(clock.nanos(measured.handling)));
    }

    /// The counts of the messages recorded to the recorder's counters.
    fn pass_counts(&mut self) {
        if self.unrecorded > 0 {
            self.series
                .handled
                .increment(std::mem::take(&mut self.unrecorded));
        }
        if self.unrecorded_errors > 0 {
            self.series
                .errors
                .increment(std::mem::take(&mut self.unrecorded_errors));
        }
    }
}

/// An actor's message types' entries, in the order it first handled them: the first one
/// inside the actor's own block ([`ActorMetrics`]; most actors handle one message type:
/// one block to touch a message, one allocation to make), the others in a list.
struct Entries {
    first: Option<PerMessage>,
    more: Vec<Lined>,
}

/// An entry after the first, on cache lines of its own (aligned to 128 bytes, see
/// [`ActorMetrics`]).
#[repr(align(128))]
struct Lined(PerMessage);

impl Entries {
    fn get(&self, at: usize) -> Option<&PerMessage> {
        match at.checked_sub(1) {
            None => self.first.as_ref(),
            Some(more) => self.more.get(more).map(|m| &m.0),
        }
    }

    fn get_mut(&mut self, at: usize) -> Option<&mut PerMessage> {
        match at.checked_sub(1) {
            None => self.first.as_mut(),
            Some(more) => self.more.get_mut(more).map(|m| &mut m.0),
        }
    }

    /// Adds `entry`; its index.
    fn push(&mut self, entry: PerMessage) -> usize {
        if self.first.is_none() {
            self.first = Some(entry);
            return 0;
        }
        // Room for one at first (128 bytes an entry).
        crate::tight::push(&mut self.more, Lined(entry));
        self.more.len()
    }

    fn iter(&self) -> impl Iterator<Item = &PerMessage> {
        self.first.iter().chain(self.more.iter().map(|m| &m.0))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut PerMessage> {
        self.first
            .iter_mut()
            .chain(self.more.iter_mut().map(|m| &mut m.0))
    }
}

/// An index given out by [`Entries::push`] (always one of its entries).
impl std::ops::Index<usize> for Entries {
    type Output = PerMessage;
    #[inline]
    fn index(&self, at: usize) -> &PerMessage {
        self.get(at).expect("an entry's index")
    }
}

impl std::ops::IndexMut<usize> for Entries {
    #[inline]
    fn index_mut(&mut self, at: usize) -> &mut PerMessage {
        self.get_mut(at).expect("an entry's index")
    }
}

/// A batch's samples of one message type, added up per bucket of the recorder's. Written
/// at every message: on cache lines of its own, as [`ActorMetrics`] is.
#[repr(align(128))]
struct Binned {
    in_mailbox: Bins,
    handling: Bins,
}

impl Binned {
    /// Out of line: once a message type, at its first batch of more than one.
    #[cold]
    #[inline(never)]
    fn new(thresholds: &[u64]) -> Box<Binned> {
        Box::new(Binned {
            in_mailbox: Bins::new(thresholds),
            handling: Bins::new(thresholds),
        })
    }
}

/// One histogram's samples of a batch, per bucket, in the clock's ticks.
struct Bins {
    /// The buckets with samples (bit `i`: bucket `i`, the last one `+Inf`).
    used: u64,
    /// Bucket `i` is `bins[i / 8].0[i % 8]`: in blocks of whole cache lines, written at
    /// every message (see [`ActorMetrics`]).
    bins: Box<[BinLines]>,
}

/// Eight buckets' [`Bin`]s, on two cache lines of their own.
#[derive(Clone, Copy, Default)]
#[repr(align(128))]
struct BinLines([Bin; 8]);

/// A bucket's samples: how many, and their sum (in ticks while the actor adds them up, in
/// nanoseconds when handed over).
#[derive(Clone, Copy, Default)]
struct Bin {
    count: u64,
    sum: u64,
}

impl Bins {
    fn new(thresholds: &[u64]) -> Self {
        Bins {
            used: 0,
            bins: vec![BinLines::default(); (thresholds.len() + 1).div_ceil(8)].into_boxed_slice(),
        }
    }

    /// Bucket `at`'s bin, if there is such a bucket.
    #[inline]
    fn bin(&mut self, at: usize) -> Option<&mut Bin> {
        self.bins.get_mut(at / 8).map(|line| &mut line.0[at % 8])
    }

    /// A sample of `ticks`: into its bucket, where the recorder would put its seconds
    /// (`thresholds`: each bucket's most ticks, see [`Buckets`]).
    #[inline(always)]
    fn add(&mut self, thresholds: &[u64], ticks: u64) {
        // Most samples are microseconds: found among the first few bounds.
        let at = thresholds
            .iter()
            .position(|&t| ticks <= t)
            .unwrap_or(thresholds.len());
        if let Some(bin) = self.bin(at) {
            bin.count += 1;
            bin.sum = bin.sum.saturating_add(ticks);
            self.used |= 1 << at;
        }
    }

    /// Each bucket used as one `record_many` of its mean, then empty again.
    fn hand_over(&mut self, buckets: &Buckets, clock: Clock, histogram: &Histogram) {
        let mut used = std::mem::take(&mut self.used);
        while used != 0 {
            let at = used.trailing_zeros() as usize;
            used &= used - 1;
            if let Some(bin) = self.bin(at) {
                let bin = std::mem::take(bin);
                let in_ns = Bin {
                    count: bin.count,
                    sum: clock.nanos(bin.sum),
                };
                histogram.record_many(bin_mean(buckets.ns, at, in_ns), bin.count as usize);
            }
        }
    }
}

/// The mean of a bucket's samples (`bin.sum` in nanoseconds), in seconds: in that bucket
/// (between the seconds of its smallest and largest durations in nanoseconds), where
/// rounding could otherwise take the mean of samples all on a bound across it. Times its
/// count, it is `bin.sum` to the last bits of an `f64`.
fn bin_mean(thresholds: &[u64], at: usize, bin: Bin) -> f64 {
    if bin.count == 1 {
        // In its bucket already.
        return seconds(bin.sum);
    }
    let mean = bin.sum as f64 / bin.count.max(1) as f64 * 1e-9;
    let low = match at.checked_sub(1).and_then(|below| thresholds.get(below)) {
        Some(&below) => seconds(below + 1),
        None => 0.0,
    };
    let high = thresholds.get(at).map_or(f64::INFINITY, |&t| seconds(t));
    // `max` then `min`, not `clamp`: no panic whatever the bounds.
    mean.max(low).min(high)
}

/// The recorder's bucket bounds: for each, the largest duration at or below it in
/// nanoseconds ([`set_seconds_buckets`](super::set_seconds_buckets)) and in the clock's
/// ticks. A duration of `t` ticks falls in the first bucket whose tick threshold it does not
/// exceed exactly when its nanoseconds fall in the first whose nanosecond threshold they do
/// not exceed (converting never decreases): the actor compares ticks, with no conversion
/// per sample.
pub(crate) struct Buckets {
    ns: &'static [u64],
    ticks: Box<[u64]>,
}

impl Buckets {
    fn new(ns: &'static [u64], clock: Clock) -> Self {
        Buckets {
            ns,
            ticks: ns.iter().map(|&t| clock.ticks_within(t)).collect(),
        }
    }

    /// The recorder's buckets, once they are known.
    fn get(clock: Clock) -> Option<&'static Buckets> {
        static BUCKETS: OnceLock<Buckets> = OnceLock::new();
        let ns = SECONDS_THRESHOLDS.get()?;
        Some(BUCKETS.get_or_init(|| Buckets::new(ns, clock)))
    }
}

/// One message's measurements, in ticks, kept until the actor's batch ends.
#[derive(Clone, Copy)]
struct Measured {
    /// Its index in [`ActorMetrics::messages`].
    at: u32,
    /// From send to the start of handling; [`UNSTAMPED`] if it was sent before recording
    /// was on.
    in_mailbox: u64,
    /// Handling time.
    handling: u64,
}

const UNSTAMPED: u64 = u64::MAX;

/// At most this many messages' measurements wait for the end of their batch: a batch of a
/// thousand messages still reaches the recorder in steps, and the buffer (24 bytes a
/// message) stays in the actor's cache.
const MAX_UNRECORDED: usize = 64;

/// An actor's metric handles, created on its first message after
/// [`enable`](super::enable) and kept in its run loop.
///
/// Per message it only reads the clock once or twice, adds up in its own memory and counts
/// the message in its type's tally (in the actor's statistics, where snapshots read it);
/// what goes to the recorder (histogram samples, counter increments, the depth gauge) goes there
/// in one go when the run loop finishes a batch ([`record`](Self::record)): before it waits
/// for mail, before it waits on a handler's `.await`, after [`MAX_UNRECORDED`] messages, and
/// when it stops. So an asker that got its answer finds the metrics of every message the
/// actor handled before its ask's batch recorded (one ask at a time: all of them); handles
/// updated per message cost a tell about three times its time without recording.
///
/// On cache lines of its own (aligned to 128 bytes: two lines, as the CPU prefetches them in
/// pairs), as is all the actor writes at every message: placed by the allocator beside a
/// block another thread writes, it lost its line to that thread's core at every message,
/// in some runs and not others (the metrics-on tell at 0.46-0.65x of metrics off over 16
/// alternated rounds, 0.56-0.80x since; docs/bench-log.md, "Metrics on its own cache lines").
#[repr(align(128))]
pub(crate) struct ActorMetrics {
    clock: Clock,
    depth: Gauge,
    skipped: Counter,
    /// Few message types per actor: a short list searched by the vtable's or the name's
    /// address.
    messages: Entries,
    /// The message being handled: its index in `messages`, send stamp and start (ticks).
    current: (u32, u64, u64),
    /// When the last message measured ended: the next one's start when it follows at
    /// once, the batch's end for [`record`](Self::record) (no clock read of its own).
    ended: u64,
    /// Whether the last call was [`handled`](Self::handled): then the message starting now
    /// follows the one that ended at `ended` in the same batch.
    chained: bool,
    /// Measured, not recorded yet, when the recorder's buckets are not known (at most
    /// [`MAX_UNRECORDED`]).
    unrecorded: Vec<Measured>,
    /// Messages measured since the last [`record`](Self::record), in `unrecorded`, in
    /// `first` or added up in their message type's [`Binned`].
    pending: usize,
    /// A batch's first message, when the recorder's buckets are known: added up in its
    /// bucket only if a second one follows in the batch. A batch of one (an ask at a time)
    /// goes to the recorder as it is, without searching its buckets twice (here, then
    /// in the recorder).
    first: Option<Measured>,
    /// The recorder's buckets, if known.
    buckets: Option<&'static Buckets>,
    /// The most ticks under a microsecond: a handling time counted in the first bucket of
    /// the snapshot statistics without a conversion to nanoseconds.
    under_us: u64,
    /// The depth last given to the gauge (`usize::MAX`: none yet): a batch that leaves it
    /// unchanged (an ask at a time: 0 after each) sets nothing.
    depth_set: usize,
}

impl ActorMetrics {
    pub(crate) fn new(core: &impl MeasuredActor) -> Box<Self> {
        let actor = core.type_name();
        let labels = actor_labels(core);
        let clock = clock();
        let buckets = Buckets::get(clock);
        let series::ActorSeries { depth, skipped } = series::actor(actor, &labels);
        Box::new(ActorMetrics {
            clock,
            depth_set: usize::MAX,
            under_us: clock.ticks_within(999),
            depth,
            skipped,
            messages: Entries {
                first: None,
                more: Vec::new(),
            },
            current: (0, 0, 0),
            ended: 0,
            chained: false,
            // Not needed when samples are added up per bucket; else grown as a batch needs
            // (an actor asked one at a time keeps room for a few, not 64: 1.5 KB).
            unrecorded: Vec::new(),
            pending: 0,
            first: None,
            buckets,
        })
    }

    /// The index of the message type with this key (0: none) and this name.
    #[inline]
    fn message(
        &mut self,
        key: usize,
        name: impl FnOnce() -> &'static str,
        core: &impl MeasuredActor,
    ) -> u32 {
        // Most actors handle one message type at a time, in runs.
        let last = self.current.0 as usize;
        if let Some(m) = self.messages.get(last) {
            if key != 0 && m.key == key {
                return last as u32;
            }
            let name = name();
            if key == 0 && std::ptr::eq(m.name, name) {
                return last as u32;
            }
            return self.other_message(key, name, core);
        }
        self.other_message(key, name(), core)
    }

    /// [`message`](Self::message) when it is not the last one's type (out of line).
    #[inline(never)]
    fn other_message(&mut self, key: usize, name: &'static str, core: &impl MeasuredActor) -> u32 {
        let found = self
            .messages
            .iter()
            .position(|m| std::ptr::eq(m.name, name) || m.name == name);
        let at = match found {
            Some(at) => at,
            None => self.messages.push(PerMessage {
                name,
                key: 0,
                series: series::message(core.type_name(), &actor_labels(core), name),
                unrecorded: 0,
                unrecorded_errors: 0,
                tally: core.tally_of(name),
                binned: None,
            }),
        };
        if key != 0 {
            self.messages[at].key = key;
        }
        at as u32
    }

    /// A message starts being handled: `key` and `name` say its type
    /// ([`Envelope::type_key`](crate::run::envelope::Envelope::type_key) and its name, asked
    /// for only when the key does not say), `stamp` when it was sent (0: unknown), `core`
    /// the actor's (its labels, for a type seen for the first time).
    ///
    /// Within a batch, it starts when the message before it ended: one clock reading a
    /// message instead of two, the actor's side of a tell being the bottleneck with
    /// recording on. So a handling time includes the run loop's step from one message to
    /// the next (taking it from the batch, tens of nanoseconds), and the time in the
    /// mailbox leaves it out.
    #[inline]
    pub(crate) fn start(
        &mut self,
        key: usize,
        name: impl FnOnce() -> &'static str,
        stamp: u64,
        core: &impl MeasuredActor,
    ) {
        let at = self.message(key, name, core);
        let started = if self.chained {
            self.ended
        } else {
            self.clock.now()
        };
        self.chained = false;
        self.current = (at, stamp, started);
    }

    /// The message [`start`](Self::start)ed was handled. Kept until the batch ends
    /// ([`record`](Self::record)); `true` when the buffer is full and the caller must record
    /// now.
    #[inline]
    pub(crate) fn handled(&mut self, failed: bool) -> bool {
        let ended = self.clock.now();
        let (at, stamp, started) = self.current;
        self.ended = ended;
        self.chained = true;
        // Two cores' counters may differ by a few ticks: a reading before another is 0.
        let measured = Measured {
            at,
            in_mailbox: if stamp == 0 {
                UNSTAMPED
            } else {
                started.saturating_sub(stamp)
            },
            handling: ended.saturating_sub(started),
        };
        let bucket = if measured.handling <= self.under_us {
            0
        } else {
            Tally::bucket_of(self.clock.nanos(measured.handling))
        };
        // The batch's first message is added up in its bucket now that a second follows
        // (once a batch), before this one's entry is taken.
        if self.pending == 1
            && let (Some(buckets), Some(first)) = (self.buckets, self.first.take())
        {
            self.messages[first.at as usize].bin(&buckets.ticks, first);
        }
        let m = &mut self.messages[at as usize];
        m.tally.count(bucket, failed);
        m.unrecorded += 1;
        m.unrecorded_errors += u64::from(failed);
        match self.buckets {
            Some(_) if self.pending == 0 => self.first = Some(measured),
            Some(buckets) => m.bin(&buckets.ticks, measured),
            None => self.unrecorded.push(measured),
        }
        self.pending += 1;
        self.pending >= MAX_UNRECORDED
    }

    /// Whether messages were handled since the last [`record`](Self::record).
    #[inline]
    pub(crate) fn has_unrecorded(&self) -> bool {
        self.pending > 0
    }

    /// The batch ended: gives the recorder what the actor measured since it last did
    /// (`depth`: the user messages queued now).
    pub(crate) fn record(&mut self, depth: usize) {
        let clock = self.clock;
        if let Some(first) = self.first.take() {
            // A batch of one (the recorder's buckets known): only its message type has
            // anything to give the recorder.
            let m = &mut self.messages[first.at as usize];
            m.record(clock, first);
            m.pass_counts();
        } else {
            for measured in self.unrecorded.drain(..) {
                self.messages[measured.at as usize].record(clock, measured);
            }
            for m in self.messages.iter_mut() {
                if m.unrecorded > 0
                    && let (Some(binned), Some(buckets)) = (&mut m.binned, self.buckets)
                {
                    binned
                        .in_mailbox
                        .hand_over(buckets, clock, &m.series.in_mailbox);
                    binned
                        .handling
                        .hand_over(buckets, clock, &m.series.handling);
                }
                m.pass_counts();
            }
        }
        self.pending = 0;
        if depth != self.depth_set {
            self.depth_set = depth;
            self.depth.set(depth as f64);
        }
        // The batch is over: the next message starts with a reading of its own.
        self.chained = false;
    }

    /// Gives the recorder everything measured, before these metrics are dropped (an actor
    /// that hibernates; the next message measured makes them again).
    pub(crate) fn flush(&mut self) {
        if self.has_unrecorded() {
            self.record(0);
        }
    }

    pub(crate) fn skipped(&self) {
        self.skipped.increment(1);
    }
}

#[cfg(test)]
mod tests;
