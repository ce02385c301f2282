//! Reading an `#[actor]` impl block into its model: each method's role, handlers and hooks
//! checked (one handler per message, one hook of each kind), with spanned errors.

use quote::ToTokens;
use syn::{ImplItem, ItemImpl};

use super::model::{HandlerFn, HookFn, ImplModel};
use super::signature::{Role, parse_handler, parse_hook, role_of};
use super::types::cfgs;
use crate::util::{Errors, last_segment};

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
