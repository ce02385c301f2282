//! Attributes on methods are kept; `#[cfg]` on a handler applies to what it generates.
#![deny(missing_docs)]
//! (crate docs)
use conclib::{actor, message};

/// A message.
#[message(response = &'static str)]
pub struct Which;

/// A template engine's context, say.
pub mod template {
    /// Variables.
    pub struct Context(pub Vec<String>);
}

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

    /// A generated message, under the test cfg on: neither the message nor its impls exist.
    #[cfg(any())]
    #[handle]
    pub fn gone(&mut self, n: u64) -> u64 {
        n
    }

    /// A generated message, one method a cfg: not a duplicate.
    #[cfg(not(any()))]
    #[handle(remote)]
    pub fn pick(&mut self) -> u8 {
        1
    }

    /// The same generated message under the opposite cfg.
    #[cfg(any())]
    #[handle(remote)]
    pub fn pick(&mut self) -> u8 {
        2
    }

    /// An argument named by a raw identifier (a keyword).
    #[handle(remote)]
    pub fn within(&mut self, r#in: u64) -> u64 {
        r#in
    }

    /// A plain argument whose type is merely named `Context` (not the actor's context); its
    /// message is generated (`name`), as the argument is not one.
    #[handle(name = "Render")]
    pub fn render(&mut self, vars: template::Context) -> usize {
        vars.0.len()
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
    assert!(<Configured as conclib::Actor>::accepts(
        std::any::TypeId::of::<Pick>()
    ));
}
