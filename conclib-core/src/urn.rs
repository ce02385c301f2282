//! Actor names: URNs, unique within one [`ActorSystem`](crate::ActorSystem).

use std::fmt;
use std::sync::Arc;

/// The longest URN accepted, in bytes.
pub const MAX_URN_LEN: usize = 256;

/// The name of an actor, unique within its system.
///
/// Anything holding the URN — another actor, another thread, another process through the
/// Redis proxy — can address the actor. Cloning is cheap (a reference count).
///
/// A URN is 1 to [`MAX_URN_LEN`] bytes of printable text: no whitespace, no control characters.
///
/// ```
/// use conclib_core::Urn;
/// let urn = Urn::new("shop:counter").unwrap();
/// assert_eq!(urn.as_str(), "shop:counter");
/// assert!(Urn::new("has space").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Urn(Arc<str>);

/// Why a string is not a valid [`Urn`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrnError {
    /// The string is empty.
    #[error("a URN cannot be empty")]
    Empty,
    /// The string is longer than [`MAX_URN_LEN`] bytes.
    #[error("URN is {len} bytes long, the limit is {MAX_URN_LEN}")]
    TooLong {
        /// The length of the rejected string, in bytes.
        len: usize,
    },
    /// The string holds whitespace or a control character.
    #[error(
        "URN {urn:?} contains {ch:?} at byte {at}: whitespace and control characters are not allowed"
    )]
    InvalidChar {
        /// The rejected string.
        urn: String,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

impl Urn {
    /// Validates `s` and makes a URN of it.
    ///
    /// # Errors
    /// [`UrnError`] if `s` is empty, too long, or holds whitespace or control characters.
    pub fn new(s: impl AsRef<str>) -> Result<Self, UrnError> {
        let s = s.as_ref();
        validate(s)?;
        Ok(Urn(Arc::from(s)))
    }

    /// The URN as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is a valid [`Urn`], checked in a `const` context (the macros use it to
/// reject invalid URNs at compile time). Non-ASCII whitespace is only caught by [`validate`].
#[must_use]
pub const fn validate_const(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_URN_LEN {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        // ASCII whitespace and control characters; non-ASCII bytes are checked at run time.
        if b[i] <= b' ' || b[i] == 0x7f {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks that `s` would make a valid [`Urn`].
///
/// # Errors
/// The same as [`Urn::new`].
pub fn validate(s: &str) -> Result<(), UrnError> {
    if s.is_empty() {
        return Err(UrnError::Empty);
    }
    if s.len() > MAX_URN_LEN {
        return Err(UrnError::TooLong { len: s.len() });
    }
    if let Some((at, ch)) = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(UrnError::InvalidChar {
            urn: s.to_owned(),
            ch,
            at,
        });
    }
    Ok(())
}

impl fmt::Display for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Urn({:?})", &*self.0)
    }
}

impl AsRef<str> for Urn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Urn {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Urn {
    type Error = UrnError;
    fn try_from(s: &str) -> Result<Self, UrnError> {
        Urn::new(s)
    }
}

impl TryFrom<String> for Urn {
    type Error = UrnError;
    fn try_from(s: String) -> Result<Self, UrnError> {
        validate(&s)?;
        Ok(Urn(Arc::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urns() {
        assert_eq!(Urn::new(""), Err(UrnError::Empty));
        assert!(matches!(
            Urn::new("a b"),
            Err(UrnError::InvalidChar { ch: ' ', at: 1, .. })
        ));
        assert!(matches!(
            Urn::new("a\tb"),
            Err(UrnError::InvalidChar { .. })
        ));
        assert!(matches!(
            Urn::new("a\u{7}"),
            Err(UrnError::InvalidChar { .. })
        ));
        assert!(matches!(
            Urn::new("x".repeat(MAX_URN_LEN + 1)),
            Err(UrnError::TooLong { .. })
        ));
        assert!(Urn::new("x".repeat(MAX_URN_LEN)).is_ok());
        assert!(Urn::new("urn:conclib:päivä").is_ok());
    }

    #[test]
    fn const_validation_agrees_on_ascii() {
        for s in ["", "a b", "a\nb", "ok:name", "x\u{7f}"] {
            assert_eq!(validate_const(s), validate(s).is_ok(), "{s:?}");
        }
    }
}
