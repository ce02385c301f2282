//! What a durable execution's journal holds in its URN's state hash
//! (`{ns}:state:{urn}`, beside the fenced store's `owner`, `data` and `applied`), and the
//! text of its records.
//!
//! Fields, for an execution of key `K` (the idempotency key; any bytes but a newline):
//! - `jn:K`: how many steps are recorded (a decimal);
//! - `js:N:K`: step `N` (1-based): `"<ms since the Unix epoch> <name>\n"` then the step's
//!   value as the proxy's codec encoded it;
//! - `jr:K`: the execution's result once it finished: `"<ms>\n"` then the encoded result
//!   (its steps are deleted then; `jn:K` stays, to say how many there were);
//! - `jp:K\nP`: promise `P` of execution `K`, resolved by a caller (the value as the
//!   caller's codec encoded it); deleted when the execution finishes having taken it;
//! - `jw:K`: the wake message of an execution suspended on a promise (bincode; see
//!   `wake.rs`), read by whoever resolves a promise; deleted when the execution finishes;
//! - `journaled`: set once any execution was journaled in the key: the key then never
//!   expires as a state key without data does, nor is deleted at passivation.

/// The longest step, version point or execution key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A step as recorded: when, its name, its encoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepRecord<'a> {
    pub(crate) at_ms: u64,
    pub(crate) name: &'a str,
    pub(crate) value: &'a [u8],
}

/// The record of step `name` recorded at `at_ms` with `value`.
pub(crate) fn step_record(at_ms: u64, name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 24);
    out.extend_from_slice(at_ms.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(value);
    out
}

/// A step's record as [`step_record`] wrote it; `None` for bytes it did not write (read
/// from Redis: anything may be there).
pub(crate) fn parse_step(bytes: &[u8]) -> Option<StepRecord<'_>> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..end]).ok()?;
    let (at, name) = header.split_once(' ')?;
    Some(StepRecord {
        at_ms: at.parse().ok()?,
        name,
        value: &bytes[end + 1..],
    })
}

/// The record of an execution's result, finished at `at_ms`.
pub(crate) fn result_record(at_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 24);
    out.extend_from_slice(at_ms.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(value);
    out
}

/// A result's record as [`result_record`] wrote it: when, and the encoded result.
pub(crate) fn parse_result(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let at = std::str::from_utf8(&bytes[..end]).ok()?.parse().ok()?;
    Some((at, &bytes[end + 1..]))
}

/// Whether `name` may name a step, a version point or an execution: not empty, at most
/// [`MAX_NAME_LEN`] bytes, no newline (the records' separator).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.contains('\n')
}

/// The name a version point `name` is recorded under, as a step.
pub(crate) fn version_step(name: &str) -> String {
    format!("@version {name}")
}

/// The name a durable sleep `name` is recorded under, as a step (its value: when it ends).
pub(crate) fn sleep_step(name: &str) -> String {
    format!("@sleep {name}")
}

/// The name a promise `name` is recorded under once taken, as a step.
pub(crate) fn promise_step(name: &str) -> String {
    format!("@promise {name}")
}

/// The field a caller resolves promise `name` of execution `key` in.
pub(crate) fn promise_field(key: &str, name: &str) -> String {
    format!("jp:{key}\n{name}")
}

/// Now, in ms since the Unix epoch (this host's clock: the records' times are for people
/// to read, never compared across hosts).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written_and_other_bytes_are_refused() {
        let r = step_record(17, "charge card", b"\n\x00value");
        assert_eq!(
            parse_step(&r),
            Some(StepRecord {
                at_ms: 17,
                name: "charge card",
                value: b"\n\x00value"
            })
        );
        assert_eq!(parse_result(&result_record(9, b"")), Some((9, &b""[..])));
        for bad in [
            &b""[..],
            b"17 name",
            b"x name\n",
            b"17\n",
            b"\xff\xfe name\n",
            b"99999999999999999999999 a\n",
        ] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
        assert_eq!(parse_result(b"no newline"), None);
        assert_eq!(parse_result(b"-1\nx"), None);
        assert!(valid_name("a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(MAX_NAME_LEN + 1)));
    }
}
