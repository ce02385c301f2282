//! What the view holds of one system: its actors (published in full and in brief) as rows,
//! in the most telling order or sorted by any column, and the search over them.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use conclib_core::{ActorBrief, ActorSnapshot, ActorState};
use conclib_redis::snapshots::PublishedSystem;
use serde::Serialize;

use crate::messages::MessageView;

/// How a page of actors is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Sort {
    Telling,
    Id,
    Urn,
    Type,
    State,
    Mailbox,
    Rate,
    Handled,
    Errors,
    Panics,
    Restarts,
    Skipped,
}

impl Sort {
    const ALL: [(&'static str, Sort); 12] = [
        ("telling", Sort::Telling),
        ("id", Sort::Id),
        ("urn", Sort::Urn),
        ("type", Sort::Type),
        ("state", Sort::State),
        ("mailbox", Sort::Mailbox),
        ("rate", Sort::Rate),
        ("handled", Sort::Handled),
        ("errors", Sort::Errors),
        ("panics", Sort::Panics),
        ("restarts", Sort::Restarts),
        ("skipped", Sort::Skipped),
    ];

    pub(crate) fn parse(name: &str) -> Option<Sort> {
        Sort::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    pub(crate) fn name(self) -> &'static str {
        Sort::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    /// Figures read best largest first.
    pub(crate) fn descending_by_default(self) -> bool {
        !matches!(
            self,
            Sort::Telling | Sort::Id | Sort::Urn | Sort::Type | Sort::State
        )
    }

    /// Ascending order of `a` and `b` by this key, then by id.
    pub(crate) fn compare(self, a: Row<'_>, b: Row<'_>) -> Ordering {
        let by = match self {
            Sort::Telling | Sort::Id => Ordering::Equal,
            Sort::Urn => match (a.urn(), b.urn()) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            Sort::Type => a.type_name().cmp(b.type_name()),
            Sort::State => a.stopping().cmp(&b.stopping()),
            Sort::Mailbox => a.figures().mailbox.cmp(&b.figures().mailbox),
            Sort::Rate => a.figures().rate.total_cmp(&b.figures().rate),
            Sort::Handled => a.figures().handled.cmp(&b.figures().handled),
            Sort::Errors => a.figures().errors.cmp(&b.figures().errors),
            Sort::Panics => a.figures().panics.cmp(&b.figures().panics),
            Sort::Restarts => a.figures().restarts.cmp(&b.figures().restarts),
            Sort::Skipped => a.figures().skipped.cmp(&b.figures().skipped),
        };
        by.then(a.id().cmp(&b.id()))
    }
}

/// An actor the view lists: published in full, or in brief.
#[derive(Clone, Copy)]
pub(crate) enum Row<'a> {
    Full(&'a ActorSnapshot),
    Brief(&'a ActorBrief),
}

/// A row's figures.
pub(crate) struct Figures {
    mailbox: usize,
    rate: f64,
    handled: u64,
    errors: u64,
    panics: u64,
    restarts: u64,
    skipped: u64,
}

/// `$body` with `$a` bound to the row's actor, whichever its form (both have the fields
/// the view reads, under the same names).
macro_rules! either {
    ($row:expr, $a:ident => $body:expr) => {
        match $row {
            Row::Full($a) => $body,
            Row::Brief($a) => $body,
        }
    };
}

impl<'a> Row<'a> {
    pub(crate) fn id(self) -> u64 {
        either!(self, a => a.id)
    }

    pub(crate) fn urn(self) -> Option<&'a str> {
        either!(self, a => a.urn.as_deref())
    }

    pub(crate) fn type_name(self) -> &'a str {
        either!(self, a => &a.type_name)
    }

    pub(crate) fn stopping(self) -> bool {
        either!(self, a => a.state == ActorState::Stopping)
    }

    pub(crate) fn figures(self) -> Figures {
        either!(self, a => Figures {
            mailbox: a.mailbox_len,
            rate: a.rate,
            handled: a.handled,
            errors: a.errors,
            panics: a.panics,
            restarts: a.restarts,
            skipped: a.asks_skipped,
        })
    }
}

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        either!(self, a => a.serialize(serializer))
    }
}

/// Most telling first among actors listed in brief (no failures-in-the-last-interval for
/// them): deeper mailbox, higher rate, more failures, lower id.
pub(crate) fn brief_telling(a: &ActorBrief, b: &ActorBrief) -> Ordering {
    let failures = |a: &ActorBrief| a.errors + a.panics + a.restarts;
    b.mailbox_len
        .cmp(&a.mailbox_len)
        .then(b.rate.total_cmp(&a.rate))
        .then(failures(b).cmp(&failures(a)))
        .then(a.id.cmp(&b.id))
}

/// Every system as last read, by system id.
pub(crate) type Tables = Arc<Vec<Arc<Table>>>;

/// Rows of a [`Table`] (see [`Table::row`]), in some order.
pub(crate) type Order = Arc<Vec<u32>>;

/// One system as last read: its published snapshot and every actor the view can search.
pub(crate) struct Table {
    /// As published, its actors moved to `full`.
    pub(crate) published: PublishedSystem,
    /// The actors published in full, in their published order.
    pub(crate) full: Vec<ActorSnapshot>,
    pub(crate) full_ids: HashSet<u64>,
    /// The actors published in brief, most telling first (reused while a newer list cannot
    /// be read; those also in `full` are not listed).
    pub(crate) briefs: Arc<Vec<ActorBrief>>,
    pub(crate) briefs_taken_at: u64,
    /// Every row, most telling first: `i` below `full.len()` is `full[i]`, above it
    /// `briefs[i - full.len()]`.
    pub(crate) telling: Vec<u32>,
    /// Counted by the snapshot, listed in neither form.
    pub(crate) unlisted: usize,
    /// Listed actors with an error, panic or restart.
    pub(crate) failing: usize,
    /// Orders of the rows by (sort, descending), made on first use.
    pub(crate) sorted: Mutex<HashMap<(Sort, bool), Order>>,
    /// Per actor type and message: since the previous snapshot.
    pub(crate) messages: Vec<MessageView>,
}

impl Table {
    /// `briefs` most telling first.
    pub(crate) fn new(
        mut published: PublishedSystem,
        briefs: Arc<Vec<ActorBrief>>,
        briefs_taken_at: u64,
        messages: Vec<MessageView>,
    ) -> Table {
        let full = std::mem::take(&mut published.snapshot.actors);
        let full_ids: HashSet<u64> = full.iter().map(|a| a.id).collect();
        let n = full.len();
        let mut telling: Vec<u32> = (0..n as u32).collect();
        telling.extend(
            briefs
                .iter()
                .enumerate()
                .filter(|(_, b)| !full_ids.contains(&b.id))
                .map(|(j, _)| (n + j) as u32),
        );
        let unlisted = (n + published.snapshot.omitted_actors).saturating_sub(telling.len());
        let mut table = Table {
            published,
            full,
            full_ids,
            briefs,
            briefs_taken_at,
            telling,
            unlisted,
            failing: 0,
            sorted: Mutex::new(HashMap::new()),
            messages,
        };
        table.failing = table
            .rows()
            .filter(|r| {
                let f = r.figures();
                f.errors + f.panics + f.restarts > 0
            })
            .count();
        table
    }

    pub(crate) fn row(&self, i: u32) -> Row<'_> {
        let i = i as usize;
        match self.full.get(i) {
            Some(actor) => Row::Full(actor),
            None => Row::Brief(&self.briefs[i - self.full.len()]),
        }
    }

    /// Every row, most telling first.
    pub(crate) fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.telling.iter().map(|&i| self.row(i))
    }

    /// The rows' order by `sort` (`None`: most telling first, as `telling`).
    pub(crate) fn order(&self, sort: Sort, descending: bool) -> Option<Order> {
        if sort == Sort::Telling && !descending {
            return None;
        }
        let mut cache = self.sorted.lock().unwrap_or_else(|e| e.into_inner());
        let order = cache.entry((sort, descending)).or_insert_with(|| {
            let mut order = self.telling.clone();
            if sort == Sort::Telling {
                order.reverse();
            } else if descending {
                order.sort_unstable_by(|&a, &b| sort.compare(self.row(b), self.row(a)));
            } else {
                order.sort_unstable_by(|&a, &b| sort.compare(self.row(a), self.row(b)));
            }
            Arc::new(order)
        });
        Some(order.clone())
    }
}

/// Whether `haystack` contains `needle` (already ASCII-lowercased), ignoring ASCII case.
pub(crate) fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty()
        || h.len() >= n.len()
            && h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// A search: its text (ASCII-lowercased) and, if it is a number (or `#` and a number), an id.
pub(crate) struct Search {
    pub(crate) text: String,
    pub(crate) id: Option<u64>,
    /// Whether each type name seen matches, by its address (the reader shares one copy of
    /// each name among the actors listed in brief).
    pub(crate) types: HashMap<(usize, usize), bool>,
}

impl Search {
    pub(crate) fn matches(&mut self, row: Row<'_>) -> bool {
        if self.id == Some(row.id())
            || row
                .urn()
                .is_some_and(|u| contains_ignoring_case(u, &self.text))
        {
            return true;
        }
        let name = row.type_name();
        let text = &self.text;
        *self
            .types
            .entry((name.as_ptr() as usize, name.len()))
            .or_insert_with(|| contains_ignoring_case(name, text))
    }
}
