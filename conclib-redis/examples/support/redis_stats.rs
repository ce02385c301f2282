//! What the benches read from Redis's `INFO stats` (shared by the examples through `#[path]`).

use fred::prelude::*;

/// The field `name` of `INFO stats` (a counter since the server started), or 0 if the server
/// refuses `INFO` or has no such field (then a figure taken from it reads 0).
pub async fn stat(redis: &Client, name: &str) -> u64 {
    let info: String = redis
        .info(Some(fred::types::InfoKind::Stats))
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
