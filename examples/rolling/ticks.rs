//! Reminder ticks across the roll: the first accounts each have a periodic reminder, every
//! member polls (`ReminderPoller`, shut down before it drains) and notes each tick its
//! accounts handle in a file of its own (`urn due_ms missed period_ms`); the driver reads
//! them all at the end and counts, per account, the due times from its first to its last
//! tick that no delivery stood for (lost) and those more than one did (doubled).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib::redis::ProxyClient;
use conclib::redis::reminders::{Reminder, ReminderTick, Reminders};

use crate::BoxError;

/// The reminder's name, and its period.
pub(super) const NAME: &str = "beat";
pub(super) const PERIOD: Duration = Duration::from_millis(200);

/// A member's notes file, shared by its activations.
#[derive(Clone)]
pub struct TickNotes(Arc<Mutex<std::fs::File>>);

impl TickNotes {
    /// The notes of member `name` in `dir`.
    pub(super) fn open(dir: &str, name: &str) -> Result<TickNotes, BoxError> {
        Ok(TickNotes(notes_file(dir, name, "ticks")?))
    }

    /// Notes a tick handled by `urn` (one write: a line is never torn).
    pub(super) fn note(&self, urn: &str, tick: &ReminderTick) -> Result<(), String> {
        let line = format!(
            "{urn} {} {} {}\n",
            tick.due_ms(),
            tick.missed(),
            tick.period_ms()
        );
        let mut f = self.0.lock().map_err(|_| "notes poisoned".to_owned())?;
        f.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Member `name`'s notes file of kind `ext` in `dir`, opened to append (its activations
/// share it).
pub(super) fn notes_file(
    dir: &str,
    name: &str,
    ext: &str,
) -> Result<Arc<Mutex<std::fs::File>>, BoxError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(dir).join(format!("{name}.{ext}")))?;
    Ok(Arc::new(Mutex::new(file)))
}

/// Registers the reminder on each of `urns`.
pub(super) async fn register(client: &ProxyClient, urns: &[String]) -> Result<(), BoxError> {
    let reminders = Reminders::new(client);
    for urn in urns {
        reminders
            .register(urn, Reminder::after(NAME, PERIOD).every(PERIOD))
            .await?;
    }
    Ok(())
}

/// Cancels the reminder on each of `urns`.
pub(super) async fn cancel(client: &ProxyClient, urns: &[String]) -> Result<(), BoxError> {
    let reminders = Reminders::new(client);
    for urn in urns {
        reminders.cancel(urn, NAME).await?;
    }
    Ok(())
}

/// What the notes in `dir` show: (due times handled, lost, doubled), all accounts together.
pub(super) fn count(dir: &Path) -> Result<(u64, u64, u64), BoxError> {
    // Per account, how many deliveries stood for each due time.
    let mut handled = BTreeMap::<String, BTreeMap<u64, u64>>::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // The members' other notes (`waits.rs`) beside them.
        if path.extension().is_none_or(|e| e != "ticks") {
            continue;
        }
        for line in std::fs::read_to_string(path)?.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let [urn, due, missed, period] = f.as_slice() else {
                return Err(format!("a tick note {line:?}").into());
            };
            let (due, missed, period): (u64, u64, u64) =
                (due.parse()?, missed.parse()?, period.parse()?);
            let dues = handled.entry((*urn).to_owned()).or_default();
            for k in 0..=missed {
                *dues.entry(due + k * period.max(1)).or_default() += 1;
            }
        }
    }
    let period = PERIOD.as_millis() as u64;
    let (mut ticks, mut lost, mut doubled) = (0, 0, 0);
    for dues in handled.values() {
        let (Some((&first, _)), Some((&last, _))) = (dues.first_key_value(), dues.last_key_value())
        else {
            continue;
        };
        let expected = (last - first) / period + 1;
        ticks += dues.len() as u64;
        lost += expected.saturating_sub(dues.len() as u64);
        doubled += dues.values().map(|n| n - 1).sum::<u64>();
    }
    Ok((ticks, lost, doubled))
}

/// A directory of its own for the run's notes.
pub(super) fn notes_dir() -> Result<PathBuf, BoxError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("conclib-rolling-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts notes written as members write them: on time, coalesced, lost, doubled.
    fn counted(notes: &[(&str, &str)]) -> (u64, u64, u64) {
        let dir = notes_dir().unwrap();
        for (member, lines) in notes {
            std::fs::write(dir.join(format!("{member}.ticks")), lines).unwrap();
        }
        let c = count(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        c
    }

    #[test]
    fn coalesced_ticks_count_once_and_gaps_and_repeats_are_found() {
        // acct:1's 1000..1800 handled across two members, 1400 and 1600 coalesced into
        // one delivery: nothing lost or doubled.
        let whole = counted(&[
            ("a", "acct:1 1000 0 200\nacct:1 1200 0 200\n"),
            ("b", "acct:1 1400 1 200\nacct:1 1800 0 200\n"),
        ]);
        assert_eq!(whole, (5, 0, 0));
        // 1400 handled by nobody; 1200 by both members.
        let broken = counted(&[
            ("a", "acct:1 1000 0 200\nacct:1 1200 0 200\n"),
            ("b", "acct:1 1200 0 200\nacct:1 1600 0 200\n"),
        ]);
        assert_eq!(broken, (3, 1, 1));
    }
}
