//! The request-stream entries a proxy has read and not yet acknowledged, and from them the
//! id below which the stream may be trimmed.
//!
//! Handled entries leave the stream by `XTRIM MINID` rather than `XDEL`: an `XDEL` walks the
//! stream node of each id it deletes and leaves a tombstone that every later read walks over
//! again, while trimming drops whole nodes at once. Trimming must never drop an entry that
//! is still pending (read and not answered), so the proxy keeps the ids it has read until
//! their answer is written, and trims only once it knows every pending entry (after
//! re-reading the consumer's pending list at start, after a connection error, and after
//! giving up on writing an answer).

use std::collections::BTreeSet;
use std::fmt;

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl EntryId {
    /// Parses `<ms>-<seq>` as Redis writes ids.
    pub(crate) fn parse(id: &[u8]) -> Option<EntryId> {
        let id = std::str::from_utf8(id).ok()?;
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest id greater than this one.
    fn successor(self) -> EntryId {
        match self.seq.checked_add(1) {
            Some(seq) => EntryId { ms: self.ms, seq },
            // (A client may add the largest id there is: never overflow on it.)
            None => EntryId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Entries read and not yet acknowledged.
///
/// Why trimming below [`trim_below`](Self::trim_below) loses nothing: entries are delivered
/// to the one consumer in id order, so an entry delivered but not yet recorded here (its
/// read is still being parsed) has a greater id than every recorded or acknowledged one; an
/// entry below the bound is therefore acknowledged, or in the batch about to be, or pending
/// from before the last re-read of the pending list (excluded by `complete`).
#[derive(Debug, Default)]
pub(crate) struct Unacked {
    ids: BTreeSet<EntryId>,
    /// Every pending entry of the consumer is in `ids`: the pending list was re-read since the
    /// proxy started, and no answer was given up on since.
    complete: bool,
    /// The greatest id acknowledged so far.
    max_acked: Option<EntryId>,
    /// While a re-read of the pending list is under way: the entries acknowledged since it
    /// was sent. Its reply may still list them (pending when Redis read them), and they must
    /// not be handled again.
    acked_during_reread: Option<BTreeSet<EntryId>>,
}

impl Unacked {
    /// Records an entry just read; false if it was already recorded (being handled), or
    /// acknowledged since the re-read of the pending list that listed it was sent.
    pub(crate) fn insert(&mut self, id: EntryId) -> bool {
        if self
            .acked_during_reread
            .as_ref()
            .is_some_and(|acked| acked.contains(&id))
        {
            return false;
        }
        self.ids.insert(id)
    }

    /// How many entries are read and not acknowledged.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// A re-read of the pending list is sent (`true`), or the re-reading is over (`false`):
    /// see [`insert`](Self::insert).
    pub(crate) fn rereading(&mut self, rereading: bool) {
        self.acked_during_reread = rereading.then(BTreeSet::new);
    }

    /// Forgets entries whose answers were written (`acked`) or given up on.
    pub(crate) fn remove(&mut self, ids: impl IntoIterator<Item = EntryId>, acked: bool) {
        for id in ids {
            self.ids.remove(&id);
            if acked {
                self.max_acked = self.max_acked.max(Some(id));
                if let Some(during) = &mut self.acked_during_reread {
                    during.insert(id);
                }
            }
        }
        if !acked {
            // Those entries stay pending in Redis and are no longer known here.
            self.complete = false;
        }
    }

    /// The stream was replaced by an empty one (`RESET_SCRIPT`): nothing read is pending,
    /// and no id of the old stream bounds the new one's trimming.
    pub(crate) fn reset(&mut self) {
        self.ids.clear();
        self.max_acked = None;
        if let Some(during) = &mut self.acked_during_reread {
            during.clear();
        }
    }

    /// The pending list was re-read to its end (or will be re-read: `false`).
    pub(crate) fn set_complete(&mut self, complete: bool) {
        self.complete = complete;
    }

    /// The id below which the stream may be trimmed once the entries of `batch` (sorted) are
    /// acknowledged too; `None` when nothing may be trimmed.
    pub(crate) fn trim_below(&self, batch: &[EntryId]) -> Option<EntryId> {
        if !self.complete {
            return None;
        }
        let acked = self.max_acked.max(batch.last().copied())?.successor();
        let oldest_other = self
            .ids
            .iter()
            .find(|id| batch.binary_search(id).is_err())
            .copied();
        Some(oldest_other.map_or(acked, |o| o.min(acked)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> EntryId {
        EntryId { ms, seq }
    }

    #[test]
    fn ids_parse_print_and_order() {
        assert_eq!(
            EntryId::parse(b"1700000000000-3"),
            Some(id(1_700_000_000_000, 3))
        );
        assert_eq!(id(5, 7).to_string(), "5-7");
        for bad in [&b""[..], b"12", b"a-1", b"1-", b"-1", b"1-2-3"] {
            assert_eq!(EntryId::parse(bad), None, "{bad:?}");
        }
        assert!(id(1, 9) < id(2, 0));
        assert_eq!(id(1, u64::MAX).successor(), id(2, 0));
    }

    /// An entry acknowledged while a re-read of the pending list was under way is not taken
    /// again from that read's reply (it was pending when Redis read it); once the re-reading
    /// is over, ids are recorded as before.
    #[test]
    fn an_entry_acknowledged_during_a_reread_is_not_taken_again() {
        let mut u = Unacked::default();
        assert!(u.insert(id(5, 0)));
        u.rereading(true);
        u.remove([id(5, 0)], true);
        assert!(
            !u.insert(id(5, 0)),
            "listed by the re-read, acknowledged since"
        );
        assert!(u.insert(id(6, 0)), "another pending entry is taken");
        assert!(!u.insert(id(6, 0)), "being handled");
        u.rereading(false);
        u.remove([id(6, 0)], true);
        assert!(u.insert(id(5, 0)), "no re-read under way: recorded as read");
    }

    #[test]
    fn nothing_is_trimmed_before_the_pending_list_is_known() {
        let mut u = Unacked::default();
        u.insert(id(1, 0));
        assert_eq!(u.trim_below(&[id(1, 0)]), None);
        u.set_complete(true);
        assert_eq!(u.trim_below(&[id(1, 0)]), Some(id(1, 1)));
        // An answer given up on leaves its entry pending in Redis: no trimming until re-read.
        u.remove([id(1, 0)], false);
        assert_eq!(u.trim_below(&[]), None);
    }

    #[test]
    fn trimming_stops_at_the_oldest_entry_still_pending() {
        let mut u = Unacked::default();
        u.set_complete(true);
        assert_eq!(u.trim_below(&[]), None, "nothing read yet");
        for seq in 0..5 {
            assert!(u.insert(id(10, seq)));
        }
        assert!(!u.insert(id(10, 2)), "already recorded");
        // Answering 10-1 and 10-3 while 10-0 is still handled: keep everything from 10-0.
        assert_eq!(u.trim_below(&[id(10, 1), id(10, 3)]), Some(id(10, 0)));
        u.remove([id(10, 1), id(10, 3)], true);
        // Answering 10-0: 10-2 is the oldest still pending.
        assert_eq!(u.trim_below(&[id(10, 0)]), Some(id(10, 2)));
        u.remove([id(10, 0)], true);
        // The rest: everything up to the greatest id acknowledged goes.
        assert_eq!(u.trim_below(&[id(10, 2), id(10, 4)]), Some(id(10, 5)));
        u.remove([id(10, 2), id(10, 4)], true);
        assert_eq!(u.trim_below(&[]), Some(id(10, 5)));
        // A batch of entries older than the greatest acknowledged (answered out of order).
        u.insert(id(11, 0));
        u.insert(id(11, 1));
        u.remove([id(11, 1)], true);
        assert_eq!(u.trim_below(&[id(11, 0)]), Some(id(11, 2)));
    }
}
