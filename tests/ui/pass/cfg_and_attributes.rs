//! Attributes on methods are kept; `#[cfg]` on a handler applies to what it generates.
#![deny(missing_docs)]
//! (crate docs)
use conclib::{actor, message};

/// A message.
#[message(response = &'static str)]
pub struct Which;

/// An actor.
#[actor]
pub struct Configured;

#[actor]
impl Configured {
    /// With the test cfg off.
    #[cfg(not(any()))]
    #[handle]
    #[inline]
    pub fn which(&mut self, _: Which) -> &'static str {
        "on"
    }

    /// Same message, under the opposite cfg: not a duplicate.
    #[cfg(any())]
    #[handle]
    pub fn which(&mut self, _: Which) -> &'static str {
        "off"
    }

    /// Kept, documented, deprecated: callable directly.
    #[deprecated = "only to check that attributes stay"]
    #[must_use]
    pub fn old(&self) -> u8 {
        1
    }
}

#[allow(deprecated)]
fn main() {
    assert_eq!(Configured.old(), 1);
    assert!(<Configured as conclib::Actor>::accepts(
        std::any::TypeId::of::<Which>()
    ));
}
