//! `#[actor]` on an impl block: the model of its `#[handle]` methods and hooks, as data
//! (`parse` builds it, `generate` and `api` read it).

use proc_macro2::Span;
use syn::{Attribute, Ident, LitStr, Type, Visibility};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Start,
    Stop,
    Panic,
    Event,
    StreamFinished,
}

impl Hook {
    pub(super) const ALL: [Hook; 5] = [
        Hook::Start,
        Hook::Stop,
        Hook::Panic,
        Hook::Event,
        Hook::StreamFinished,
    ];

    pub fn attr(self) -> &'static str {
        match self {
            Hook::Start => "on_start",
            Hook::Stop => "on_stop",
            Hook::Panic => "on_panic",
            Hook::Event => "on_event",
            Hook::StreamFinished => "on_stream_finished",
        }
    }

    /// The argument the hook gets besides the context: (name, type as the user writes it).
    pub fn payload(self) -> Option<(&'static str, &'static str)> {
        match self {
            Hook::Start => None,
            Hook::Stop => Some(("reason", "&StopReason")),
            Hook::Panic => Some(("message", "&str")),
            Hook::Event => Some(("event", "SupervisionEvent")),
            Hook::StreamFinished => Some(("id", "StreamId")),
        }
    }

    pub(super) fn signature(self) -> String {
        let name = self.attr();
        match self.payload() {
            None => format!(
                "`fn {name}(&mut self, ctx: &mut Context<Self>) -> Result<(), E>` (the context and the result are optional)"
            ),
            Some((arg, ty)) if self == Hook::Stop => format!(
                "`fn {name}(&mut self, ctx: &mut Context<Self>, {arg}: {ty}) -> Result<(), E>` (both arguments and the result are optional)"
            ),
            Some((arg, ty)) => format!(
                "`fn {name}(&mut self, ctx: &mut Context<Self>, {arg}: {ty})` (both arguments are optional)"
            ),
        }
    }
}

/// An argument of a `#[handle]` method or hook after `&mut self`, in the user's order.
pub enum Arg {
    /// `ctx: &mut Context<Self>`; the span of its type.
    Ctx(Span),
    /// The message, or the hook's argument; its type.
    Payload(Box<Type>),
    /// A plain value of a method that generates its message: the field it travels in.
    Field(Ident),
}

/// The message a `#[handle]` method with plain arguments generates: `fn add(&mut self, n:
/// u64) -> u64` declares `struct Add { n: u64 }` answering `u64`.
pub struct GeneratedMessage {
    pub ident: Ident,
    pub fields: Vec<(Ident, Type)>,
    pub response: Type,
    /// The error of a method returning `Result<T, E>`.
    pub error: Option<Type>,
    /// Whether the message carries the impl block's generic parameters (it does when an
    /// argument or the return type names one).
    pub generic: bool,
    /// Whether it needs a `PhantomData` field for parameters no argument names.
    pub marker: bool,
}

/// A `#[handle]` method.
pub struct HandlerFn {
    pub method: Ident,
    /// The message type: the one the method takes, or the generated one (with generics).
    pub message: Type,
    pub generated: Option<GeneratedMessage>,
    /// The name of the message argument in the generated API method (message-struct form).
    pub param: Ident,
    pub args: Vec<Arg>,
    pub is_async: bool,
    pub fallible: bool,
    /// The return type; `None` for `()`.
    pub output: Option<Type>,
    /// Where a wrong return type is reported: the return type, or the method's name.
    pub output_span: Span,
    pub remote: bool,
    pub cfgs: Vec<Attribute>,
    pub docs: Vec<Attribute>,
    pub vis: Visibility,
}

/// A lifecycle hook method.
pub struct HookFn {
    pub hook: Hook,
    pub method: Ident,
    pub args: Vec<Arg>,
    pub is_async: bool,
    pub fallible: bool,
    pub output_span: Span,
    pub cfgs: Vec<Attribute>,
}

pub struct ImplModel {
    pub handlers: Vec<HandlerFn>,
    pub hooks: Vec<HookFn>,
}

/// The options of `#[handle(...)]`.
#[derive(Default)]
pub(super) struct HandleOptions {
    pub(super) remote: bool,
    pub(super) name: Option<LitStr>,
}
