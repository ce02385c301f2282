//! `#[actor]` on an impl block: the model of its `#[handle]` methods and hooks, checked.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{Attribute, Ident, ImplItem, ItemImpl, Type, Visibility};

use super::signature::{Role, cfgs, parse_handler, parse_hook, role_of};
use crate::util::{Errors, last_segment};

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

/// Takes the `#[handle]`/hook attributes off the methods and builds the model.
pub fn parse_impl(item: &mut ItemImpl) -> syn::Result<ImplModel> {
    let generics = item.generics.clone();
    let mut errors = Errors::default();
    let mut handlers: Vec<HandlerFn> = Vec::new();
    let mut hooks: Vec<HookFn> = Vec::new();
    for impl_item in &mut item.items {
        let attrs = match impl_item {
            ImplItem::Fn(f) => &mut f.attrs,
            ImplItem::Const(c) => &mut c.attrs,
            ImplItem::Type(t) => &mut t.attrs,
            ImplItem::Macro(m) => &mut m.attrs,
            _ => continue,
        };
        let mut role: Option<(Role, &'static str)> = None;
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            match role_of(&attr) {
                None => kept.push(attr),
                Some(Err(e)) => errors.push(e),
                Some(Ok(r)) => {
                    let name = match &r {
                        Role::Handle { .. } => "handle",
                        Role::Hook(h) => h.attr(),
                    };
                    if let Some((_, first)) = &role {
                        errors.spanned(
                            &attr,
                            format!("this method is already #[{first}]; a method has one role, #[{name}] needs its own method"),
                        );
                    } else {
                        role = Some((r, name));
                    }
                }
            }
        }
        *attrs = kept;
        let Some((role, name)) = role else { continue };
        let ImplItem::Fn(f) = impl_item else {
            errors.spanned(&*impl_item, format!("#[{name}] goes on a method"));
            continue;
        };
        // The method is called by the generated impls: its `&mut self`, its message taken by
        // value and its signature are the macro's form, not the user's choice.
        f.attrs.push(syn::parse_quote!(
            #[allow(clippy::needless_pass_by_value, clippy::unused_self, clippy::unused_async)]
        ));
        match role {
            Role::Handle(options) => {
                if let Some(handler) = parse_handler(f, &options, &generics, &mut errors) {
                    push_handler(&mut handlers, handler, &mut errors);
                }
            }
            Role::Hook(hook) => {
                let duplicate = hooks
                    .iter()
                    .find(|h| h.hook == hook && h.cfgs.is_empty() && cfgs(&f.attrs).is_empty());
                if let Some(first) = duplicate {
                    errors.spanned(
                        &f.sig.ident,
                        format!(
                            "the actor already has an #[{}] method, `{}`: an actor has one; merge them",
                            hook.attr(),
                            first.method
                        ),
                    );
                } else if let Some(parsed) = parse_hook(f, hook, &mut errors) {
                    hooks.push(parsed);
                }
            }
        }
    }
    errors.finish()?;
    Ok(ImplModel { handlers, hooks })
}

/// The last identifier of a message type: what a generated message would be named.
fn message_name(handler: &HandlerFn) -> String {
    match &handler.generated {
        Some(g) => g.ident.to_string(),
        None => last_segment(&handler.message).map_or_else(String::new, |s| s.ident.to_string()),
    }
}

/// Adds a handler, refusing a second handler of one message type and two methods that
/// generate the same message name.
fn push_handler(handlers: &mut Vec<HandlerFn>, handler: HandlerFn, errors: &mut Errors) {
    let unconditional = |h: &&HandlerFn| h.cfgs.is_empty() && handler.cfgs.is_empty();
    if let Some(g) = &handler.generated {
        let name = g.ident.to_string();
        if let Some(first) = handlers
            .iter()
            .filter(unconditional)
            .find(|h| message_name(h) == name)
        {
            let what = if first.generated.is_some() {
                "generates"
            } else {
                "handles"
            };
            errors.spanned(
                &handler.method,
                format!(
                    "this method generates the message `{name}`, and `{}` {what} a message of that name too: \
                     name this one with `#[handle(name = \"...\")]` or rename the method",
                    first.method
                ),
            );
            return;
        }
    } else {
        let key = handler.message.to_token_stream().to_string();
        let name = message_name(&handler);
        if let Some(first) = handlers.iter().filter(unconditional).find(|h| {
            h.message.to_token_stream().to_string() == key
                || (h.generated.is_some() && message_name(h) == name)
        }) {
            errors.spanned(
                &handler.message,
                format!(
                    "`{}` already has a handler, `{}`: an actor has one #[handle] method per message type; \
                     merge them or declare a second message type",
                    key.replace(' ', ""),
                    first.method
                ),
            );
            return;
        }
    }
    handlers.push(handler);
}
