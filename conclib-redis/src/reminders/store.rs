//! [`Reminders`]: register, cancel and list a URN's reminders (one round trip each).

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclib_codec::{Bincode, Codec, encode_value};
use fred::prelude::*;
use serde::Serialize;

use super::keys::{ShardKeys, check_name, member};
use super::scripts::Scripts;
use crate::client::ProxyClient;
use crate::conn::{as_bytes, bytes, int, owned, text};

/// The scripts, SHA computed once per process.
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(Scripts::new)
}

/// Why a reminder call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReminderError {
    /// The URN, the name, the time or the period is not valid (nothing was written).
    #[error("invalid reminder: {0}")]
    Invalid(String),
    /// The payload could not be encoded, or is larger than the client's `max_payload`.
    #[error("reminder payload: {0}")]
    Codec(String),
    /// Redis did not answer, or refused: the call may or may not have taken effect.
    #[error("Redis: {0}")]
    Unavailable(String),
}

/// The longest delay, period or time (since the Unix epoch) a reminder takes: 10,000
/// years. Redis keeps due times as doubles, exact to 2^53 ms; a schedule past this is
/// refused as [`ReminderError::Invalid`] before anything is written.
pub const MAX_REMINDER_HORIZON: Duration = Duration::from_secs(10_000 * 365 * 24 * 3600);

/// `d` in ms, or `Invalid` past [`MAX_REMINDER_HORIZON`].
fn within_horizon(what: &str, d: Duration) -> Result<u64, ReminderError> {
    if d > MAX_REMINDER_HORIZON {
        return Err(ReminderError::Invalid(format!(
            "{what} of {d:?} is past the longest a reminder takes ({MAX_REMINDER_HORIZON:?}, \
             10,000 years)"
        )));
    }
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a reminder is first due.
#[derive(Debug, Clone, Copy)]
enum FirstDue {
    /// This long after Redis's now (as Redis runs the registration).
    After(Duration),
    /// At this time (by Redis's clock).
    At(SystemTime),
}

/// A reminder to register: its name, when it is first due, its period, its payload.
///
/// ```
/// use std::time::Duration;
/// use conclib_redis::reminders::Reminder;
/// let renew = Reminder::after("renew", Duration::from_secs(3600))
///     .every(Duration::from_secs(24 * 3600));
/// assert_eq!(renew.name(), "renew");
/// ```
#[derive(Clone)]
pub struct Reminder {
    name: String,
    first: FirstDue,
    period: Option<Duration>,
    payload: Result<Option<(Vec<u8>, &'static str)>, String>,
    /// Deliver missed ticks one by one, this far apart at least (else coalesce them).
    each: Option<Duration>,
}

impl fmt::Debug for Reminder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reminder")
            .field("name", &self.name)
            .field("first", &self.first)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Reminder {
    /// Due `delay` after the registration (by Redis's clock, so clocks of the registering
    /// hosts do not matter).
    #[must_use]
    pub fn after(name: impl Into<String>, delay: Duration) -> Self {
        Reminder {
            name: name.into(),
            first: FirstDue::After(delay),
            period: None,
            payload: Ok(None),
            each: None,
        }
    }

    /// Due at `at` (compared with Redis's clock).
    #[must_use]
    pub fn at(name: impl Into<String>, at: SystemTime) -> Self {
        Reminder {
            name: name.into(),
            first: FirstDue::At(at),
            period: None,
            payload: Ok(None),
            each: None,
        }
    }

    /// Due again every `period` after its first time (at least 1 ms). Ticks missed while
    /// no system delivered them are coalesced into one delivery
    /// ([`ReminderTick::missed`](crate::reminders::ReminderTick::missed)).
    #[must_use]
    pub fn every(mut self, period: Duration) -> Self {
        self.period = Some(period);
        self
    }

    /// Delivers the ticks of a periodic reminder missed while no system ran one by one (each
    /// with [`missed`](crate::reminders::ReminderTick::missed) 0 and its own
    /// [`due_ms`](crate::reminders::ReminderTick::due_ms)), at least `min_gap` apart (at least 1 ms),
    /// instead of coalescing them into one delivery (the default).
    #[must_use]
    pub fn deliver_each(mut self, min_gap: Duration) -> Self {
        self.each = Some(min_gap.max(Duration::from_millis(1)));
        self
    }

    /// Carries `payload` (typically one of the actor's own messages), encoded with bincode;
    /// the handler decodes it with [`ReminderTick::payload`](crate::reminders::ReminderTick::payload).
    #[must_use]
    pub fn payload<T: Serialize>(self, payload: &T) -> Self {
        self.payload_with(&Bincode, payload)
    }

    /// Carries `payload` encoded with `codec` (its wire name goes with it).
    #[must_use]
    pub fn payload_with<T: Serialize>(mut self, codec: &dyn Codec, payload: &T) -> Self {
        self.payload = encode_value(codec, payload)
            .map(|b| Some((b, codec.name())))
            .map_err(|e| e.to_string());
        self
    }

    /// Carries `payload`, bytes already encoded with the codec named `codec`.
    #[must_use]
    pub(crate) fn raw_payload(mut self, payload: Vec<u8>, codec: &'static str) -> Self {
        self.payload = Ok(Some((payload, codec)));
        self
    }

    /// The reminder's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A registered reminder, as [`Reminders::list`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReminderInfo {
    /// Its name.
    pub name: String,
    /// When its next tick is due (ms since the Unix epoch, Redis's clock).
    pub due_ms: u64,
    /// Its period in ms (0: once).
    pub period_ms: u64,
    /// Its payload's bytes (empty: none) and their codec.
    pub payload: Vec<u8>,
    /// The payload's codec (`bincode`, `msgpack`).
    pub codec: String,
    /// Whether a system is delivering it now.
    pub claimed: bool,
}

/// Registers, cancels and lists reminders through a [`ProxyClient`]'s connections. Cheap to
/// clone: give one to an activated actor (in its constructor) so that it registers its own.
///
/// A reminder wakes an actor by URN at a time, once or every period, whether it is
/// activated, passivated, or its system is gone: it lives in Redis, not in the actor's task
/// (the in-process timers of `Context` stay as they are: they die with the actor). Every
/// system that runs a [`ReminderPoller`](crate::reminders::ReminderPoller) claims due reminders and
/// delivers each as a [`ReminderTick`](crate::reminders::ReminderTick) ask to its URN through the
/// ordinary request path: the URN is activated if it is passivated (by the pattern's
/// placement), leases and fencing apply as to any ask.
///
/// # Guarantees
/// Each has a test with real processes and a real redis-server
/// (`conclib-redis/tests/reminders/`, `tests/reminder_metrics.rs`,
/// `python/tests/test_reminders.py`):
/// - **Exactly one delivery per tick across systems, absent crashes and timeouts.** A due
///   reminder is claimed in one script by one poller (its score in the due set becomes the
///   claim's end), and acknowledged only by that claim. 10,000 reminders on 100 URNs due
///   within one second, three member processes polling and activating: each handled exactly
///   once (`reminders_fire_exactly_once_across_three_systems`). A delivery that reaches its
///   [`delivery_timeout`](crate::reminders::ReminderPollerOptions::delivery_timeout) is retried, and
///   may then be handled twice if the first one was handled late: size the timeout to the
///   handler.
/// - **At least once across crashes; reminders move as activations do.** A tick is
///   acknowledged only once its ask was handled (answered, or failed in the handler:
///   `Handler`, `Panicked`, `NoResponse`). A claim lasts
///   [`claim_lease`](crate::reminders::ReminderPollerOptions::claim_lease) (4 s by default, the
///   default system lease) and is renewed every third of it while its delivery runs, as a
///   system's lease is: a poller killed, frozen or cut from Redis between its claim and its
///   acknowledgement stops renewing, and another poller delivers the tick once the claim
///   lapsed (`a_periodic_reminders_deliverer_killed_is_taken_over_within_the_claim_lease`:
///   the system delivering a periodic reminder SIGKILLed mid-delivery at the default claim
///   lease while another poller runs, the next tick from the other after 4.25 s;
///   `a_firer_killed_mid_delivery_is_taken_over_after_its_claim`). A graceful
///   [`shutdown`](crate::reminders::ReminderPoller::shutdown) finishes and acknowledges its
///   deliveries first (within [`shutdown_timeout`](crate::ProxyConfig::shutdown_timeout)).
///   The 10,000-reminder burst with one of the three systems SIGKILLed mid-way: every tick
///   handled, the duplicates counted (`reminders_fire_at_least_once_with_a_system_killed_mid_way`).
///   A delivery whose acknowledgement was lost comes again with the same
///   [`due_ms`](crate::reminders::ReminderTick::due_ms) and the ticks missed meanwhile coalesced into
///   it: a handler that must act once per tick keeps the
///   [`last_due_ms`](crate::reminders::ReminderTick::last_due_ms) it handled in its `StateStore` and
///   acts [`ticks_since`](crate::reminders::ReminderTick::ticks_since) times, which loses no tick and
///   counts none twice (checked over every delivery of the takeover test above).
/// - **A reminder nobody can receive shows.** A delivery to a URN no system serves
///   (`UnknownUrn`) is retried after [`retry_after`](crate::reminders::ReminderPollerOptions::retry_after)
///   and counted: [`ReminderPollerStats::unserved`](crate::reminders::ReminderPollerStats::unserved),
///   [`PollerReport::unserved`](crate::reminders::PollerReport::unserved) (the live view), and the
///   metric `conclib_reminders_unserved_total` (`a_reminder_on_a_urn_nobody_serves_is_counted_unserved`).
/// - **Invalid schedules are refused before anything is written**: a period of 0, a delay,
///   period or time past [`MAX_REMINDER_HORIZON`] (10,000 years; Redis keeps due times as
///   doubles) answer [`ReminderError::Invalid`] (`reminders_register_cancel_list_and_reject_what_is_invalid`).
/// - **Passivated or re-homed actors are woken.** A reminder an actor registered from its
///   own handler activates it again after it was passivated, and activates it on another
///   system after its holder was SIGKILLed
///   (`a_reminder_registered_by_an_actor_wakes_it_after_passivation_and_after_its_holder_is_killed`).
/// - **No flood after downtime.** Ticks of a periodic reminder that came due while no
///   system ran are coalesced into one delivery whose
///   [`missed`](crate::reminders::ReminderTick::missed) says how many earlier ticks it stands for; the
///   next tick is the first one after it on the period's grid. Every system stopped while 11
///   ticks came due: one delivery with `missed = 10`, then the next on time
///   (`a_periodic_reminder_missed_while_all_systems_were_down_fires_once`). With
///   [`Reminder::deliver_each`] the missed ticks come one by one instead, each with its own
///   due time, at least the given gap apart (`missed_ticks_are_delivered_one_by_one_when_asked`).
/// - **Failed deliveries are retried.** An ask that fails otherwise (`Unavailable`,
///   `Timeout`, `UnknownUrn`, `MailboxFull`, ...) gives the claim back, to be tried again
///   after [`retry_after`](crate::reminders::ReminderPollerOptions::retry_after) (1 s).
/// - **Redis restarts.** With AOF (`appendfsync always`), 1,000 registered reminders are all
///   there, with their schedules, after Redis was SIGKILLed and started on its file
///   (`reminders_survive_a_redis_restart_with_aof`).
/// - **Scale.** Due reminders are found in [`REMINDER_SHARDS`](crate::reminders::REMINDER_SHARDS)
///   sorted sets by due time (a URN's shard by a hash of it, each shard under its own hash
///   tag, so a shard's scripts run on one Cluster node: on a Cluster of 3 primaries the
///   shards spread over all three and 64 reminders of 32 URNs fire once each,
///   `reminders_fire_once_on_a_redis_cluster`), so reminders not due cost nothing but
///   their memory; registration and cancellation are one round trip. The figures are the
///   `reminders` example's (BENCHMARKS.md).
/// - **Hostile records.** A member of a due set without a record, or whose record has no
///   URN, name or numeric due time (written by something other than these scripts), is
///   dropped from the due set, never delivered; a period that is not a number counts as
///   none. The valid reminders of the shard fire
///   (`garbled_records_do_not_stop_their_shard`).
/// - **Redis promotions** (Sentinel, Cluster). At
///   [`Durability::Replicas`](crate::Durability::Replicas) a registration or cancellation
///   returns `Ok` only once the replicas it asks for hold it, and a poller's claims, their
///   renewals and the acknowledgements wait for them too: every reminder whose
///   registration returned `Ok` fired across lagging promotions under 64 callers
///   (`examples/tests/redis_failover.rs`). At the default level a promotion of a lagging
///   replica may lose registrations and acknowledgements (the crate docs, "Redis
///   topologies and durability", say how many).
/// - **Other languages.** The Python client registers, cancels and lists with the same
///   scripts (`python/tests/test_reminders.py`, checked equal by
///   `the_python_client_sends_the_same_scripts`); its MessagePack payload is decoded by the
///   Rust actor ([`ReminderTick::payload`](crate::reminders::ReminderTick::payload)).
///
/// ```no_run
/// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use conclib_redis::reminders::{Reminder, Reminders};
/// let reminders = Reminders::new(&client);
/// reminders.register("user:42", Reminder::after("renew", Duration::from_secs(60))).await?;
/// assert_eq!(reminders.list("user:42").await?.len(), 1);
/// assert!(reminders.cancel("user:42", "renew").await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Reminders {
    client: ProxyClient,
}

impl fmt::Debug for Reminders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reminders")
            .field("namespace", &self.client.config().namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl fmt::Display) -> ReminderError {
    ReminderError::Unavailable(e.to_string())
}

impl Reminders {
    /// Reminders through `client`'s connections and namespace.
    #[must_use]
    pub fn new(client: &ProxyClient) -> Self {
        Reminders {
            client: client.clone(),
        }
    }

    /// `operation` (a write and the `WAIT`s after it) within the command timeout, as a lone
    /// write is (`Durability::within`).
    async fn within_command_timeout<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, ReminderError>>,
    ) -> Result<T, ReminderError> {
        let config = self.client.config();
        let limit = config.command_timeout;
        config
            .durability
            .within(limit, operation, || {
                unavailable(format!(
                    "not replicated within the command timeout ({limit:?}); the call may or may not have taken effect"
                ))
            })
            .await
    }

    fn connection(&self) -> Result<&Client, ReminderError> {
        self.client.command_connection().map_err(unavailable)
    }

    /// Registers `reminder` for `urn`, replacing one of the same name (a new schedule; a
    /// delivery of the old one in flight is not acknowledged). Returns when it is first
    /// due (ms since the Unix epoch, Redis's clock). One round trip.
    ///
    /// # Errors
    /// [`ReminderError::Invalid`] for a URN or name that is not valid, a period of 0, a
    /// delay, period or time past [`MAX_REMINDER_HORIZON`] (nothing is written);
    /// [`ReminderError::Codec`] for a payload that could not be encoded or is too large;
    /// [`ReminderError::Unavailable`] when Redis did not answer, or, at
    /// [`Durability::Replicas`](crate::Durability::Replicas), the replicas did not take the
    /// registration in time (it may still fire). Either way within
    /// [`command_timeout`](crate::ProxyConfig::command_timeout), the write and the `WAIT`s
    /// after it together.
    pub async fn register(&self, urn: &str, reminder: Reminder) -> Result<u64, ReminderError> {
        self.within_command_timeout(self.write_registration(urn, reminder))
            .await
    }

    /// [`register`](Self::register), not bounded as a whole.
    async fn write_registration(
        &self,
        urn: &str,
        reminder: Reminder,
    ) -> Result<u64, ReminderError> {
        conclib_core::validate_urn(urn).map_err(|e| ReminderError::Invalid(e.to_string()))?;
        check_name(&reminder.name).map_err(ReminderError::Invalid)?;
        let period = match reminder.period {
            Some(p) if p.as_millis() == 0 => {
                return Err(ReminderError::Invalid("a period is at least 1 ms".into()));
            }
            Some(p) => within_horizon("a period", p)?,
            None => 0,
        };
        let (payload, codec) = reminder
            .payload
            .map_err(ReminderError::Codec)?
            .unwrap_or_default();
        let max = self.client.config().max_payload;
        if payload.len() > max {
            return Err(ReminderError::Codec(format!(
                "{} bytes, more than max_payload ({max})",
                payload.len()
            )));
        }
        let (at, after) = match reminder.first {
            FirstDue::After(d) => (String::new(), within_horizon("a delay", d)?.to_string()),
            FirstDue::At(t) => {
                let ms = t
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| ReminderError::Invalid("a time before the Unix epoch".into()))?;
                (within_horizon("a time", ms)?.to_string(), String::new())
            }
        };
        let keys = ShardKeys::of_urn(&self.client.config().namespace, urn);
        // One connection for the write and its `WAIT`: a `WAIT` counts only the writes of
        // the connection it is sent on (`Durability`).
        let cmd = self.connection()?;
        let sent = self.client.config().durability.sending(cmd);
        let answer = scripts()
            .register
            .eval(
                cmd,
                vec![
                    keys.due(),
                    keys.record(urn, &reminder.name),
                    keys.index(urn),
                ],
                vec![
                    owned(urn),
                    owned(reminder.name.clone()),
                    owned(at),
                    owned(after),
                    owned(period.to_string()),
                    bytes(payload),
                    owned(codec),
                    owned(member(urn, &reminder.name)),
                    owned(
                        reminder
                            .each
                            .map(|g| g.as_millis().to_string())
                            .unwrap_or_default(),
                    ),
                ],
            )
            .await
            .map_err(unavailable)?;
        // Registered once a promotion would keep it (`Durability`): a registration the
        // promoted replica lacks would never fire.
        self.replicated(cmd, &keys, &sent).await?;
        super::metrics::registered(&self.client.config().namespace);
        int(&answer).ok_or_else(|| unavailable(format!("unexpected answer {answer:?}")))
    }

    /// Cancels `urn`'s reminder `name`; returns whether it was registered. A delivery in
    /// flight is not acknowledged (it may still reach the actor once).
    ///
    /// # Errors
    /// [`ReminderError::Invalid`], [`ReminderError::Unavailable`] as for
    /// [`register`](Self::register).
    pub async fn cancel(&self, urn: &str, name: &str) -> Result<bool, ReminderError> {
        self.within_command_timeout(self.write_cancellation(urn, name))
            .await
    }

    /// [`cancel`](Self::cancel), not bounded as a whole.
    async fn write_cancellation(&self, urn: &str, name: &str) -> Result<bool, ReminderError> {
        conclib_core::validate_urn(urn).map_err(|e| ReminderError::Invalid(e.to_string()))?;
        check_name(name).map_err(ReminderError::Invalid)?;
        let keys = ShardKeys::of_urn(&self.client.config().namespace, urn);
        let cmd = self.connection()?;
        let sent = self.client.config().durability.sending(cmd);
        let answer = scripts()
            .cancel
            .eval(
                cmd,
                vec![keys.due(), keys.record(urn, name), keys.index(urn)],
                vec![owned(member(urn, name)), owned(name)],
            )
            .await
            .map_err(unavailable)?;
        self.replicated(cmd, &keys, &sent).await?;
        Ok(int(&answer) == Some(1))
    }

    /// Waits until the shard's writes sent on `cmd` reached the replicas the client's
    /// durability asks for; `Unavailable` (the write's outcome unknown) if they did not.
    /// `cmd` is the connection that wrote, `sent` read before the write: the client has
    /// several connections, and a `WAIT` on another one, or on one that replaced it since,
    /// would not count these writes (a registration reported `Ok` that a promotion then
    /// lost, never to fire).
    async fn replicated(
        &self,
        cmd: &Client,
        keys: &ShardKeys,
        sent: &crate::durability::Sent,
    ) -> Result<(), ReminderError> {
        self.client
            .config()
            .durability
            .replicated(cmd, &keys.due(), sent)
            .await
            .map_err(|e| unavailable(format!("{e}; the call may or may not have taken effect")))
    }

    /// `urn`'s reminders, sorted by name.
    ///
    /// # Errors
    /// [`ReminderError::Invalid`], [`ReminderError::Unavailable`] as for
    /// [`register`](Self::register).
    pub async fn list(&self, urn: &str) -> Result<Vec<ReminderInfo>, ReminderError> {
        conclib_core::validate_urn(urn).map_err(|e| ReminderError::Invalid(e.to_string()))?;
        let keys = ShardKeys::of_urn(&self.client.config().namespace, urn);
        let answer = scripts()
            .list
            .eval(
                self.connection()?,
                vec![keys.index(urn)],
                vec![owned(keys.record_prefix()), owned(urn)],
            )
            .await
            .map_err(unavailable)?;
        let Value::Array(rows) = answer else {
            return Ok(Vec::new());
        };
        let mut out: Vec<ReminderInfo> = rows
            .iter()
            .filter_map(|row| match row {
                Value::Array(f) if f.len() == 6 => Some(ReminderInfo {
                    name: text(&f[0]),
                    due_ms: int(&f[1]).unwrap_or(0),
                    period_ms: int(&f[2]).unwrap_or(0),
                    payload: as_bytes(&f[3]).map(<[u8]>::to_vec).unwrap_or_default(),
                    codec: text(&f[4]),
                    claimed: int(&f[5]) == Some(1),
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
