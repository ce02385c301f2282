//! [`ReminderTick`]: what an actor receives when one of its reminders is due.

use conclib_codec::{CodecError, decode_value};
use conclib_core::{Message, MessageDecl};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A due reminder, delivered to its URN as an ask (wire name `conclib.ReminderTick`). An
/// actor that has reminders exposes it (`ExposedMessage::of::<ReminderTick>()`, or
/// `#[handle(remote)]` with the `#[actor]` DSL) and answers `Ok(())` once it handled the
/// tick: then, and only then, the tick is acknowledged.
///
/// ```
/// use conclib_core::{Actor, Context, ExposedMessage, RequestEnvelope};
/// use conclib_redis::reminders::ReminderTick;
///
/// struct Subscription { renewals: u64 }
/// impl Actor for Subscription {
///     const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<ReminderTick>()];
///     async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
///         match req.extract::<ReminderTick>() {
///             Ok((tick, r)) => {
///                 if tick.name() == "renew" {
///                     // One delivery may stand for several ticks missed while nothing ran.
///                     self.renewals += 1 + tick.missed();
///                 }
///                 r.respond(Ok(()))
///             }
///             Err(req) => req.reject(),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderTick {
    name: String,
    due_ms: u64,
    period_ms: u64,
    missed: u64,
    payload: Vec<u8>,
    codec: String,
}

impl ReminderTick {
    /// A tick as a poller delivers it, without payload: for a handler's unit tests (add one
    /// with [`with_payload`](Self::with_payload)).
    ///
    /// ```
    /// use conclib_redis::reminders::ReminderTick;
    /// let tick = ReminderTick::new("renew", 1_000, 60_000, 2);
    /// assert_eq!(tick.last_due_ms(), 121_000);
    /// assert_eq!(tick.ticks_since(Some(61_000)), 1);
    /// ```
    #[must_use]
    pub fn new(name: impl Into<String>, due_ms: u64, period_ms: u64, missed: u64) -> Self {
        ReminderTick::from_wire(
            name.into(),
            due_ms,
            period_ms,
            missed,
            Vec::new(),
            String::new(),
        )
    }

    /// This tick with `payload`, encoded as a Rust registration encodes it (bincode).
    ///
    /// # Errors
    /// [`CodecError`] when `payload` cannot be encoded.
    pub fn with_payload<T: Serialize>(mut self, payload: &T) -> Result<Self, CodecError> {
        let codec = conclib_codec::Bincode;
        self.payload = conclib_codec::encode_value(&codec, payload)?;
        self.codec = conclib_codec::Codec::name(&codec).to_owned();
        Ok(self)
    }

    pub(crate) fn from_wire(
        name: String,
        due_ms: u64,
        period_ms: u64,
        missed: u64,
        payload: Vec<u8>,
        codec: String,
    ) -> Self {
        ReminderTick {
            name,
            due_ms,
            period_ms,
            missed,
            payload,
            codec,
        }
    }

    /// The reminder's name (unique per URN).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When this tick was due: ms since the Unix epoch, by Redis's clock. With
    /// [`missed`](Self::missed) ticks coalesced, the first of them.
    ///
    /// Delivery is at least once, and a delivery whose acknowledgement was lost (its poller
    /// died) comes again with the same `due_ms` and, later, more ticks coalesced into it: a
    /// handler that must act once per tick keeps the [`last_due_ms`](Self::last_due_ms) it
    /// handled and acts [`ticks_since`](Self::ticks_since) times, which loses no tick and
    /// counts none twice (keeping `due_ms` alone would drop the ticks coalesced later).
    #[must_use]
    pub fn due_ms(&self) -> u64 {
        self.due_ms
    }

    /// The last tick this delivery stands for: [`due_ms`](Self::due_ms) plus
    /// [`missed`](Self::missed) periods. The key a handler keeps to act once per tick.
    #[must_use]
    pub fn last_due_ms(&self) -> u64 {
        self.due_ms
            .saturating_add(self.missed.saturating_mul(self.period_ms))
    }

    /// How many of the ticks this delivery stands for come after `last_handled` (the
    /// [`last_due_ms`](Self::last_due_ms) of the last delivery handled, `None`: none yet):
    /// `1 + missed` for a new delivery, fewer (0 for one handled already) for a delivery
    /// that came again.
    #[must_use]
    pub fn ticks_since(&self, last_handled: Option<u64>) -> u64 {
        let all = 1 + self.missed;
        match last_handled {
            None => all,
            Some(h) if h < self.due_ms => all,
            Some(_) if self.period_ms == 0 => 0,
            Some(h) => {
                let handled = (h - self.due_ms) / self.period_ms + 1;
                all.saturating_sub(handled)
            }
        }
    }

    /// The reminder's period in ms, 0 for a one-shot reminder.
    #[must_use]
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// How many earlier ticks of a periodic reminder this delivery stands for (they came
    /// due while no system delivered them, and are coalesced into this one): 0 when on time.
    #[must_use]
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Whether the reminder was registered with a payload.
    #[must_use]
    pub fn has_payload(&self) -> bool {
        !self.payload.is_empty()
    }

    /// The payload registered with the reminder, decoded as a `T` (typically one of the
    /// actor's own messages) with the codec it was encoded with (`bincode` from Rust,
    /// `msgpack` from other languages).
    ///
    /// # Errors
    /// [`CodecError`] when there is no payload, its codec is not compiled in, or it does
    /// not hold a `T`.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        if self.payload.is_empty() {
            return Err(CodecError::new("none", "the reminder has no payload"));
        }
        let codec = conclib_codec::builtin_codec(self.codec.as_bytes()).ok_or_else(|| {
            CodecError::new("none", format!("unknown payload codec {:?}", self.codec))
        })?;
        decode_value(&*codec, &self.payload)
    }
}

impl MessageDecl for ReminderTick {
    type WireError = String;
}

impl Message for ReminderTick {
    type Response = ();
    type Error = String;
    fn name() -> &'static str {
        "conclib.ReminderTick"
    }
}
