//! Wakes: a durable sleep or promise that suspends its execution (the handler returns, the
//! activation may be passivated, its member may die) is resumed by a durable reminder on its
//! URN, which carries the message that runs the execution again (its wake message).
//!
//! A wake reminder is named `durable:<key>` (or `durable:#<hash of key>` for a key a
//! reminder name cannot hold) and carries the wake message as registered by
//! [`Execution::wake_with`](super::Execution::wake_with), bincode-encoded. A sleep registers
//! one due when it ends; a promise leaves the wake message in its journal (`jw:<key>`)
//! before it waits, and whoever resolves the promise registers one due at once
//! ([`Executions::resolve`](super::Executions::resolve)).

use std::time::{Duration, UNIX_EPOCH};

use crate::reminders::{MAX_REMINDER_NAME_LEN, Reminder, ReminderError, ReminderTick, Reminders};

use super::error::DurableError;

/// The prefix of every wake reminder's name.
pub(crate) const PREFIX: &str = "durable:";

/// How an activated URN's journal registers its wakes: through which [`Reminders`], for
/// which URN, and how long a sleep may be waited for in the handler before it suspends.
#[derive(Clone)]
pub(crate) struct Wakes {
    pub(crate) reminders: Reminders,
    pub(crate) urn: String,
    pub(crate) hold: Duration,
}

/// The name of execution `key`'s wake reminder.
pub(crate) fn reminder_name(key: &str) -> String {
    if PREFIX.len() + key.len() <= MAX_REMINDER_NAME_LEN && !key.chars().any(char::is_control) {
        return format!("{PREFIX}{key}");
    }
    // FNV-1a, 64 bits: a name a reminder can hold, one per key.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{PREFIX}#{h:016x}")
}

/// Whether `tick` is a durable execution's wake (its payload is the execution's wake
/// message, [`ReminderTick::payload`]).
pub(crate) fn is_wake(tick: &ReminderTick) -> bool {
    tick.name().starts_with(PREFIX)
}

impl Wakes {
    /// Registers execution `key`'s wake, due at `at_ms` (ms since the Unix epoch), carrying
    /// `message` (bincode bytes).
    pub(crate) async fn register(
        &self,
        key: &str,
        at_ms: u64,
        message: &[u8],
    ) -> Result<(), DurableError> {
        register(&self.reminders, &self.urn, key, Some(at_ms), message).await
    }

    /// Cancels execution `key`'s wake (it finished).
    pub(crate) async fn cancel(&self, key: &str) -> Result<(), DurableError> {
        self.reminders
            .cancel(&self.urn, &reminder_name(key))
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

/// Registers `urn`'s execution `key`'s wake, due at `at_ms` (`None`: at once, by Redis's
/// clock), carrying `message`.
pub(crate) async fn register(
    reminders: &Reminders,
    urn: &str,
    key: &str,
    at_ms: Option<u64>,
    message: &[u8],
) -> Result<(), DurableError> {
    let name = reminder_name(key);
    let reminder = match at_ms {
        Some(ms) => Reminder::at(name, UNIX_EPOCH + Duration::from_millis(ms)),
        None => Reminder::after(name, Duration::ZERO),
    };
    let reminder = reminder.raw_payload(message.to_vec(), "bincode");
    reminders
        .register(urn, reminder)
        .await
        .map(drop)
        .map_err(unavailable)
}

fn unavailable(e: ReminderError) -> DurableError {
    DurableError::Redis(format!("wake reminder: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_wake_name_a_reminder_holds() {
        assert_eq!(reminder_name("order-1"), "durable:order-1");
        for key in ["x".repeat(300), "a\u{7}b".to_owned()] {
            let name = reminder_name(&key);
            assert!(name.starts_with("durable:#"), "{name}");
            assert!(name.len() <= MAX_REMINDER_NAME_LEN);
        }
        assert_ne!(
            reminder_name(&"x".repeat(300)),
            reminder_name(&"y".repeat(300))
        );
        // The Python client computes the same (`python/tests/test_durable.py`).
        assert_eq!(reminder_name(&"x".repeat(300)), "durable:#e78ddf9f1ba85555");
        assert!(is_wake(&ReminderTick::new("durable:k", 0, 0, 0)));
        assert!(!is_wake(&ReminderTick::new("renew", 0, 0, 0)));
    }
}
