//! Redis's clock, as far as a proxy can tell ([`Clock`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use fred::prelude::*;

use crate::conn::{self, as_bytes};

/// Redis's clock minus this process's, in ms: read with `TIME` at the start and at every
/// renewal.
#[derive(Default)]
pub(in crate::proxy) struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Redis's clock now, as far as we can tell, in ms.
    pub(in crate::proxy) fn redis_now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Reads Redis's clock (`TIME`), and keeps its offset from ours (unchanged when Redis
    /// does not answer).
    pub(in crate::proxy) async fn sync(&self, cmd: &Client) {
        let before = now_ms();
        let Ok(Value::Array(parts)) = conn::call(cmd, conn::unkeyed("TIME"), vec![]).await else {
            return;
        };
        let after = now_ms();
        let num =
            |v: &Value| as_bytes(v).and_then(|b| std::str::from_utf8(b).ok()?.parse::<i64>().ok());
        if let [secs, micros] = &parts[..]
            && let (Some(secs), Some(micros)) = (num(secs), num(micros))
        {
            let redis = secs * 1000 + micros / 1000;
            self.offset_ms
                .store(redis - (before + after) / 2, Ordering::Relaxed);
        }
    }
}

/// This process's clock now, in ms since the Unix epoch.
pub(in crate::proxy) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
