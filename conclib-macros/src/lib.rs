//! The `#[message]` and `#[actor]` attributes of conclib.
//!
//! Use them through the `conclib` crate (`use conclib::{actor, message};`), whose
//! documentation of [`macro@message`] and [`macro@actor`] has the complete reference, with
//! runnable examples and what the attributes expand to.
//!
//! # How it works
//!
//! Each attribute parses its input into a small model (the options; for an impl block, one
//! entry per `#[handle]` method and hook), validates it with errors spanned at the user's
//! code (`syn::Error::new_spanned`), then generates code that names everything by absolute
//! path (`::conclib::...`, or the name the user's `Cargo.toml` gives the crate, or
//! `crate = path`). What only the compiler can check (a handler returning the wrong type, a
//! remote message that cannot be serialized, a non-`Send` future) goes through hidden helper
//! traits in `conclib::__private` whose `#[diagnostic::on_unimplemented]` messages explain
//! the fix, at the user's span.

mod actor;
mod message;
mod util;

use proc_macro::TokenStream;

/// Implements `conclib::Message` for a struct or an enum.
///
/// Options: `response = Type` (default `()`), `error = Type` (default
/// `std::convert::Infallible`), `name = "..."` (default: the type's identifier), `version = N`
/// (default 1: `Message::version`), `crate = path`.
#[proc_macro_attribute]
pub fn message(args: TokenStream, input: TokenStream) -> TokenStream {
    message::expand(args.into(), input.into()).into()
}

/// On a struct or an enum, the actor's options (`urn = "..."`, `mailbox = N` or
/// `mailbox = unbounded`, `crate = path`); on its inherent impl block, implements
/// `conclib::Actor` and one `conclib::Handler` per `#[handle]` method, with the hooks
/// `#[on_start]`, `#[on_stop]`, `#[on_panic]`, `#[on_event]` and `#[on_stream_finished]`.
#[proc_macro_attribute]
pub fn actor(args: TokenStream, input: TokenStream) -> TokenStream {
    actor::expand(args.into(), input.into()).into()
}
