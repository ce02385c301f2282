//! The proxy's side of the fuzz targets (feature `fuzzing`, internal; see
//! [`crate::__fuzz`]): a request's stream entry as read, validated and passed on.

use std::time::Duration;

use fred::prelude::*;

use super::serve::forward::entry_fields;
use super::serve::request::{RawEnvelope, RouteHint};

/// The reply lists' prefix the targets check `reply` against.
pub(crate) const REPLY_PREFIX: &str = "app:reply:";

/// A request's fields as read by the proxy: parsed, addressed, validated. A valid request
/// passed on to another system (`forward`'s entry, as Redis keeps it: every value a string)
/// reads back as the same request, with the same reply address (and, for an asker that
/// reads route hints, marked passed on).
pub(crate) fn request_entry(fields: Vec<Value>) {
    let env = RawEnvelope::parse(fields);
    let address = env.address(REPLY_PREFIX);
    let Ok(req) = env.validate() else {
        return;
    };
    let reply_to = address.flatten();
    let ttl = Duration::from_millis(u64::try_from(req.ttl_ms).expect("a valid ttl is positive"));
    let passed_on = entry_fields(&req, &reply_to, ttl, "1-0 from")
        .into_iter()
        .map(|v| match v {
            Value::Integer(i) => Value::from(i.to_string()),
            v => v,
        })
        .collect();
    let env = RawEnvelope::parse(passed_on);
    let hinted = req.route_hint != RouteHint::Unread && reply_to.is_some();
    assert_eq!(env.address(REPLY_PREFIX), Some(reply_to), "reply address");
    let again = env.validate().expect("a request passed on is valid");
    assert_eq!(again.urn, req.urn);
    assert_eq!(again.message, req.message);
    assert_eq!(again.ttl_ms, req.ttl_ms);
    assert_eq!(again.codec, req.codec);
    assert_eq!(again.body, req.body);
    assert_eq!(again.priority, req.priority);
    assert_eq!(again.trace, req.trace);
    // Its identity goes with it: the one an earlier pass or a takeover gave it, else the
    // entry it was read as.
    assert_eq!(
        again.first_entry(),
        req.first_entry().or(Some("1-0 from")),
        "identity"
    );
    // An ask whose asker reads route hints is answered with one once passed on; nothing
    // else is.
    assert_eq!(
        again.route_hint == RouteHint::PassedOn,
        hinted,
        "route hint"
    );
}

/// Whether these fields make a valid request (for the seeds' test).
#[cfg(test)]
pub(crate) fn parse(fields: Vec<Value>) -> Result<(), String> {
    RawEnvelope::parse(fields).validate().map(drop)
}
