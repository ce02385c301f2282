//! `#[actor]`: on a struct or enum, the actor's options; on its impl block, the `Actor` and
//! `Handler` impls.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Generics, Ident, ImplItem, ImplItemFn, Item, ItemImpl, LitInt, LitStr, Path,
    ReturnType, Type, TypeReference,
};

use crate::util::{
    Errors, crate_path, crate_value, is_result, is_unit, last_segment, respan, set_once,
    string_value,
};

/// The longest URN the runtime accepts (`conclib_core::MAX_URN_LEN`).
const MAX_URN_LEN: usize = 256;

const STRUCT_KEYS: &str =
    "`urn = \"...\"`, `mailbox = <capacity>` or `mailbox = unbounded`, `crate = path`";

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return e.into_compile_error(),
    };
    match item {
        Item::Struct(s) => expand_options(args, &s.ident, &s.generics, s.to_token_stream()),
        Item::Enum(e) => expand_options(args, &e.ident, &e.generics, e.to_token_stream()),
        Item::Impl(i) => expand_impl(args, i),
        other => {
            let e = syn::Error::new_spanned(
                first_tokens(&other),
                "#[actor] goes on the actor's struct or enum (with its options), and on the impl block \
                 that holds its #[handle] methods",
            )
            .into_compile_error();
            quote! { #other #e }
        }
    }
}

/// The keyword and name of an item, to point at without underlining all of it.
fn first_tokens(item: &Item) -> TokenStream {
    match item {
        Item::Fn(f) => {
            let (a, b) = (&f.sig.fn_token, &f.sig.ident);
            quote!(#a #b)
        }
        Item::Trait(t) => {
            let (a, b) = (&t.trait_token, &t.ident);
            quote!(#a #b)
        }
        Item::Union(u) => {
            let (a, b) = (&u.union_token, &u.ident);
            quote!(#a #b)
        }
        Item::Mod(m) => {
            let (a, b) = (&m.mod_token, &m.ident);
            quote!(#a #b)
        }
        Item::Type(t) => {
            let (a, b) = (&t.type_token, &t.ident);
            quote!(#a #b)
        }
        other => other.to_token_stream(),
    }
}

// ---------------------------------------------------------------------------------------------
// On the struct: the options.

enum Mailbox {
    Bounded(LitInt),
    Unbounded,
}

#[derive(Default)]
struct ActorOptions {
    urn: Option<LitStr>,
    mailbox: Option<Mailbox>,
    krate: Option<Path>,
}

fn parse_options(args: TokenStream) -> syn::Result<ActorOptions> {
    let mut options = ActorOptions::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("urn") {
            let urn = string_value(&meta, "urn", "shop:counter")?;
            if let Err(why) = validate_urn(&urn.value()) {
                return Err(syn::Error::new(
                    urn.span(),
                    format!(
                        "invalid URN: {why} (a URN is 1 to {MAX_URN_LEN} bytes of printable text, like \"shop:counter\")"
                    ),
                ));
            }
            set_once(&mut options.urn, urn, &meta, "urn")
        } else if meta.path.is_ident("mailbox") {
            let mailbox = mailbox_value(&meta)?;
            set_once(&mut options.mailbox, mailbox, &meta, "mailbox")
        } else if meta.path.is_ident("crate") {
            set_once(&mut options.krate, crate_value(&meta)?, &meta, "crate")
        } else {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{key}` of #[actor] on a struct; it accepts {STRUCT_KEYS}"
            )))
        }
    });
    parser.parse2(args)?;
    Ok(options)
}

fn mailbox_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Mailbox> {
    const HINT: &str = "`mailbox` takes a capacity (`mailbox = 64`) or `mailbox = unbounded`";
    let expr: syn::Expr = meta.value()?.parse()?;
    match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(n),
            ..
        }) => match n.base10_parse::<usize>() {
            Ok(0) => Err(syn::Error::new(
                n.span(),
                "a mailbox holds at least 1 message",
            )),
            Ok(_) if n.suffix().is_empty() || n.suffix() == "usize" => {
                Ok(Mailbox::Bounded(n.clone()))
            }
            Ok(_) => Err(syn::Error::new(
                n.span(),
                "a mailbox capacity is a `usize`: drop the suffix",
            )),
            Err(e) => Err(syn::Error::new(n.span(), format!("{e}; {HINT}"))),
        },
        syn::Expr::Path(p) if p.path.is_ident("unbounded") => Ok(Mailbox::Unbounded),
        _ => Err(syn::Error::new_spanned(expr, HINT)),
    }
}

/// The rules of `conclib_core::validate_urn`.
fn validate_urn(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a URN cannot be empty".to_owned());
    }
    if s.len() > MAX_URN_LEN {
        return Err(format!(
            "it is {} bytes long, the limit is {MAX_URN_LEN}",
            s.len()
        ));
    }
    if let Some((at, ch)) = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} contains {ch:?} at byte {at}: whitespace and control characters are not allowed"
        ));
    }
    Ok(())
}

fn expand_options(
    args: TokenStream,
    ident: &Ident,
    generics: &Generics,
    item: TokenStream,
) -> TokenStream {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(e) => {
            let e = e.into_compile_error();
            return quote! { #item #e };
        }
    };
    let krate = crate_path(options.krate);
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let urn = match &options.urn {
        // The runtime's own check, as a backstop should its rules change.
        Some(urn) => quote! {{
            ::core::assert!(#krate::validate_urn_const(#urn), "invalid URN in #[actor(urn = ...)]");
            ::core::option::Option::Some(#urn)
        }},
        None => quote!(::core::option::Option::None),
    };
    let mailbox = match &options.mailbox {
        Some(Mailbox::Bounded(n)) => {
            let n = LitInt::new(n.base10_digits(), n.span());
            quote!(#krate::MailboxConfig::Bounded(#n))
        }
        Some(Mailbox::Unbounded) => quote!(#krate::MailboxConfig::Unbounded),
        None => quote!(#krate::MailboxConfig::Bounded(#krate::DEFAULT_MAILBOX_CAPACITY)),
    };
    quote! {
        #item

        #[automatically_derived]
        impl #impl_generics #krate::__private::ActorOptions for #ident #type_generics #where_clause {
            const URN: ::core::option::Option<&'static str> = #urn;
            const MAILBOX: #krate::MailboxConfig = #mailbox;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// On the impl block: the model.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Start,
    Stop,
    Panic,
    Event,
    StreamFinished,
}

impl Hook {
    const ALL: [Hook; 5] = [
        Hook::Start,
        Hook::Stop,
        Hook::Panic,
        Hook::Event,
        Hook::StreamFinished,
    ];

    fn attr(self) -> &'static str {
        match self {
            Hook::Start => "on_start",
            Hook::Stop => "on_stop",
            Hook::Panic => "on_panic",
            Hook::Event => "on_event",
            Hook::StreamFinished => "on_stream_finished",
        }
    }

    /// The argument the hook gets besides the context: (name, type as the user writes it).
    fn payload(self) -> Option<(&'static str, &'static str)> {
        match self {
            Hook::Start => None,
            Hook::Stop => Some(("reason", "&StopReason")),
            Hook::Panic => Some(("message", "&str")),
            Hook::Event => Some(("event", "SupervisionEvent")),
            Hook::StreamFinished => Some(("id", "StreamId")),
        }
    }

    fn signature(self) -> String {
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
enum Arg {
    /// `ctx: &mut Context<Self>`; the span of its type.
    Ctx(Span),
    /// The message, or the hook's argument; its type.
    Payload(Box<Type>),
}

/// A `#[handle]` method.
struct HandlerFn {
    method: Ident,
    message: Type,
    args: Vec<Arg>,
    is_async: bool,
    fallible: bool,
    /// The return type; `None` for `()`.
    output: Option<Type>,
    /// Where a wrong return type is reported: the return type, or the method's name.
    output_span: Span,
    remote: bool,
    cfgs: Vec<Attribute>,
}

/// A lifecycle hook method.
struct HookFn {
    hook: Hook,
    method: Ident,
    args: Vec<Arg>,
    is_async: bool,
    fallible: bool,
    output_span: Span,
    cfgs: Vec<Attribute>,
}

struct ImplModel {
    handlers: Vec<HandlerFn>,
    hooks: Vec<HookFn>,
}

/// What a method of the impl block is for.
enum Role {
    Handle { remote: bool },
    Hook(Hook),
}

fn role_of(attr: &Attribute) -> Option<Result<Role, syn::Error>> {
    let path = attr.path();
    if path.is_ident("handle") {
        return Some(parse_handle_attr(attr).map(|remote| Role::Handle { remote }));
    }
    let hook = Hook::ALL.into_iter().find(|h| path.is_ident(h.attr()))?;
    Some(match &attr.meta {
        syn::Meta::Path(_) => Ok(Role::Hook(hook)),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "#[{}] takes no options: write `#[{}]`",
                hook.attr(),
                hook.attr()
            ),
        )),
    })
}

fn parse_handle_attr(attr: &Attribute) -> syn::Result<bool> {
    let mut remote = false;
    match &attr.meta {
        syn::Meta::Path(_) => {}
        syn::Meta::List(_) => attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("remote") {
                if remote {
                    return Err(meta.error("`remote` is given twice"));
                }
                remote = true;
                Ok(())
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                Err(meta.error(format!(
                    "unknown option `{key}` of #[handle]; it accepts `remote` (`#[handle(remote)]` exposes the message to other processes)"
                )))
            }
        })?,
        syn::Meta::NameValue(nv) => {
            return Err(syn::Error::new_spanned(nv, "write `#[handle]` or `#[handle(remote)]`"));
        }
    }
    Ok(remote)
}

/// Whether a parameter type is `&mut Context<..>` (any path ending in `Context`).
fn is_ctx(ty: &Type) -> bool {
    matches!(ty, Type::Reference(TypeReference { mutability: Some(_), elem, .. })
        if last_segment(elem).is_some_and(|s| s.ident == "Context"))
}

/// A `Context` taken other than by `&mut`.
fn is_misused_ctx(ty: &Type) -> bool {
    let inner = match ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    last_segment(inner).is_some_and(|s| s.ident == "Context")
}

fn is_self_mut(ty: &Type) -> bool {
    matches!(ty, Type::Reference(TypeReference { mutability: Some(_), elem, .. })
        if matches!(&**elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self")))
}

/// Checks what every `#[handle]` method and hook has in common: a plain `&mut self` method.
fn check_common(f: &ImplItemFn, what: &str, example: &str, errors: &mut Errors) -> bool {
    let sig = &f.sig;
    let before = errors.count();
    if let Some(c) = &sig.constness {
        errors.spanned(c, format!("{what} cannot be a `const fn`"));
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(
            u,
            format!("{what} cannot be `unsafe`: the runtime calls it"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, format!("{what} cannot have an `extern` ABI"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!("{what} cannot be generic: the runtime calls it with fixed types (make the impl block generic instead)"),
        );
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, format!("{what} cannot be variadic"));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if is_self_mut(&r.ty) => {}
        Some(FnArg::Receiver(r)) => errors.spanned(
            r,
            format!(
                "{what} takes `&mut self`, found `{}`: the actor handles one message at a time with exclusive access to its state",
                r.to_token_stream().to_string().replace("& ", "&")
            ),
        ),
        _ => errors.at(
            sig.paren_token.span.join(),
            format!("{what} takes `&mut self` as its first argument, like `{example}`"),
        ),
    }
    errors.count() == before
}

/// Sorts the arguments after `&mut self` into the context and the payloads.
fn classify_args<'a>(f: &'a ImplItemFn, errors: &mut Errors) -> (Vec<Arg>, Vec<&'a Type>) {
    let mut args = Vec::new();
    let mut payloads = Vec::new();
    let mut has_ctx = false;
    let skip = usize::from(matches!(f.sig.inputs.first(), Some(FnArg::Receiver(_))));
    for input in f.sig.inputs.iter().skip(skip) {
        let FnArg::Typed(pt) = input else {
            // A second receiver is a syntax error reported by rustc.
            continue;
        };
        if is_ctx(&pt.ty) {
            if has_ctx {
                errors.spanned(pt, "the context is taken once: remove this argument");
            }
            has_ctx = true;
            args.push(Arg::Ctx(pt.ty.span()));
        } else {
            payloads.push(&*pt.ty);
            args.push(Arg::Payload(pt.ty.clone()));
        }
    }
    (args, payloads)
}

fn cfgs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect()
}

fn parse_handler(f: &ImplItemFn, remote: bool, errors: &mut Errors) -> Option<HandlerFn> {
    const WHAT: &str = "a #[handle] method";
    const EXAMPLE: &str = "fn ping(&mut self, msg: Ping, ctx: &mut Context<Self>) -> Pong";
    const TOO_MANY: &str = "too many arguments: a #[handle] method takes `&mut self`, the message, and optionally \
                            `ctx: &mut Context<Self>`; put the values together in one message type";
    let ok = check_common(f, WHAT, EXAMPLE, errors);
    let (args, payloads) = classify_args(f, errors);
    let message = match payloads.as_slice() {
        [] => {
            errors.at(
                f.sig.paren_token.span.join(),
                format!("a #[handle] method takes the message it handles, like `{EXAMPLE}`"),
            );
            return None;
        }
        [message, rest @ ..] => {
            for extra in rest {
                if is_misused_ctx(extra) {
                    errors.spanned(
                        extra,
                        "the context is taken by mutable reference: `ctx: &mut Context<Self>`",
                    );
                } else {
                    errors.spanned(extra, TOO_MANY);
                }
            }
            if is_misused_ctx(message) {
                errors.spanned(
                    message,
                    "the context is taken by mutable reference (`ctx: &mut Context<Self>`), after the message",
                );
                return None;
            }
            if let Type::Reference(_) = message {
                errors.spanned(
                    message,
                    "a #[handle] method takes its message by value: the message is moved into the actor",
                );
                return None;
            }
            if let Type::ImplTrait(_) = message {
                errors.spanned(
                    message,
                    "the message of a #[handle] method is a named type, not `impl Trait`",
                );
                return None;
            }
            (*message).clone()
        }
    };
    if !ok || payloads.len() > 1 {
        return None;
    }
    let (fallible, output, output_span) = match &f.sig.output {
        ReturnType::Default => (false, None, f.sig.ident.span()),
        ReturnType::Type(_, ty) => (is_result(ty), Some((**ty).clone()), ty.span()),
    };
    Some(HandlerFn {
        method: f.sig.ident.clone(),
        message,
        args,
        is_async: f.sig.asyncness.is_some(),
        fallible,
        output,
        output_span,
        remote,
        cfgs: cfgs(&f.attrs),
    })
}

fn parse_hook(f: &ImplItemFn, hook: Hook, errors: &mut Errors) -> Option<HookFn> {
    let what = format!("an #[{}] method", hook.attr());
    let signature = hook.signature();
    let example = signature
        .trim_start_matches('`')
        .split('`')
        .next()
        .unwrap_or_default()
        .to_owned();
    let ok = check_common(f, &what, &example, errors);
    let (args, payloads) = classify_args(f, errors);
    let allowed = usize::from(hook.payload().is_some());
    let mut extra_ok = true;
    for extra in payloads.iter().skip(allowed) {
        extra_ok = false;
        if is_misused_ctx(extra) {
            errors.spanned(
                extra,
                "the context is taken by mutable reference: `ctx: &mut Context<Self>`",
            );
        } else {
            errors.spanned(
                extra,
                format!(
                    "too many arguments: the form of #[{}] is {signature}",
                    hook.attr()
                ),
            );
        }
    }
    let (fallible, output_span) = match &f.sig.output {
        ReturnType::Default => (false, f.sig.ident.span()),
        ReturnType::Type(_, ty) if is_unit(ty) => (false, ty.span()),
        ReturnType::Type(_, ty) if matches!(hook, Hook::Start | Hook::Stop) && is_result(ty) => {
            (true, ty.span())
        }
        ReturnType::Type(_, ty) => {
            let form = match hook {
                Hook::Start => {
                    "#[on_start] returns nothing, or `Result<(), E>` to make the spawn fail with the error"
                }
                Hook::Stop => {
                    "#[on_stop] returns nothing, or `Result<(), E>` to report a failure in the stop reason"
                }
                _ => "this hook returns nothing",
            };
            errors.spanned(
                ty,
                format!("{form}; the form of #[{}] is {signature}", hook.attr()),
            );
            return None;
        }
    };
    if !ok || !extra_ok {
        return None;
    }
    Some(HookFn {
        hook,
        method: f.sig.ident.clone(),
        args,
        is_async: f.sig.asyncness.is_some(),
        fallible,
        output_span,
        cfgs: cfgs(&f.attrs),
    })
}

/// Takes the `#[handle]`/hook attributes off the methods and builds the model.
fn parse_impl(item: &mut ItemImpl) -> syn::Result<ImplModel> {
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
            Role::Handle { remote } => {
                if let Some(handler) = parse_handler(f, remote, &mut errors) {
                    let key = handler.message.to_token_stream().to_string();
                    if let Some(first) = handlers
                        .iter()
                        .find(|h| {
                            h.message.to_token_stream().to_string() == key && h.cfgs.is_empty()
                        })
                        .filter(|_| handler.cfgs.is_empty())
                    {
                        errors.spanned(
                            &handler.message,
                            format!(
                                "`{}` already has a handler, `{}`: an actor has one #[handle] method per message type; \
                                 merge them or declare a second message type",
                                key.replace(' ', ""),
                                first.method
                            ),
                        );
                    } else {
                        handlers.push(handler);
                    }
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

// ---------------------------------------------------------------------------------------------
// On the impl block: the generated code.

const IMPL_KEYS: &str =
    "`crate = path` (the actor's options, `urn` and `mailbox`, go on its struct)";

fn parse_impl_args(args: TokenStream) -> syn::Result<Option<Path>> {
    let mut krate = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            set_once(&mut krate, crate_value(&meta)?, &meta, "crate")
        } else if meta.path.is_ident("urn") || meta.path.is_ident("mailbox") {
            let key = meta.path.to_token_stream().to_string();
            Err(meta.error(format!(
                "`{key}` is an option of #[actor] on the actor's struct: `#[actor({key} = ...)] struct MyActor {{ .. }}`; \
                 #[actor] on the impl block accepts {IMPL_KEYS}"
            )))
        } else {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{key}` of #[actor] on an impl block; it accepts {IMPL_KEYS}"
            )))
        }
    });
    parser.parse2(args)?;
    Ok(krate)
}

fn expand_impl(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    if let Some((bang, path, for_token)) = &item.trait_ {
        errors.spanned(
            quote!(#bang #path #for_token),
            format!(
                "#[actor] goes on the inherent impl block of the actor (`impl {} {{ .. }}`), not on an impl of a trait: \
                 it writes the `Actor` and `Handler` impls from the #[handle] methods itself",
                item.self_ty.to_token_stream().to_string().replace(' ', "")
            ),
        );
        let e = errors.into_compile_error();
        return quote! { #item #e };
    }
    let krate = match parse_impl_args(args) {
        Ok(krate) => crate_path(krate),
        Err(e) => {
            errors.push(e);
            crate_path(None)
        }
    };
    let model = parse_impl(&mut item);
    match model {
        Ok(model) if errors.is_empty() => {
            let generated = generate_impl(&item, &model, &krate);
            quote! { #item #generated }
        }
        Ok(_) => {
            let (fallback, e) = (fallback_impl(&item, &krate), errors.into_compile_error());
            quote! { #item #fallback #e }
        }
        Err(e) => {
            errors.push(e);
            let (fallback, e) = (fallback_impl(&item, &krate), errors.into_compile_error());
            quote! { #item #fallback #e }
        }
    }
}

/// Whether a type names something that cannot be written in an expression (`impl Trait`).
fn has_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(t, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

/// The arguments of the call to the user's method, in the user's order. A hook's argument
/// goes through `hook_argument`, which says so when the user's type is not the runtime's.
fn call_args(
    krate: &Path,
    args: &[Arg],
    payload: &str,
    given: Option<&TokenStream>,
) -> Vec<TokenStream> {
    args.iter()
        .map(|a| match a {
            Arg::Ctx(span) => Ident::new("ctx", *span).to_token_stream(),
            Arg::Payload(ty) => {
                let span = ty.span();
                let value = Ident::new(payload, span);
                match given {
                    Some(given) if !has_impl_trait(ty) => {
                        let check = respan(
                            quote!(#krate::__private::hook_argument::<#given, #ty>),
                            span,
                        );
                        quote_spanned!(span=> #check(#value))
                    }
                    _ => value.to_token_stream(),
                }
            }
        })
        .collect()
}

/// `name` if the user's method takes it, else `_`.
fn param(used: bool, name: &str) -> TokenStream {
    if used {
        format_ident!("{}", name).to_token_stream()
    } else {
        quote!(_)
    }
}

/// The call to the user's method; an async one's future must be `Send`, checked here so that
/// the error points at the method.
fn call(krate: &Path, method: &Ident, args: &[TokenStream], is_async: bool) -> TokenStream {
    let span = method.span();
    if is_async {
        let check = respan(quote!(#krate::__private::handler_future), span);
        quote_spanned!(span=> #check(Self::#method(self, #(#args),*)).await)
    } else {
        quote_spanned!(span=> Self::#method(self, #(#args),*))
    }
}

/// When the impl block has errors: an empty `Actor` impl, so that uses of the actor elsewhere
/// (its `Context<Self>`, `spawn`) do not add errors of their own.
fn fallback_impl(item: &ItemImpl, krate: &Path) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    quote! {
        impl #impl_generics #krate::Actor for #self_ty #where_clause {}
    }
}

fn generate_impl(item: &ItemImpl, model: &ImplModel, krate: &Path) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let mut out = TokenStream::new();

    // One `Handler` impl per #[handle] method.
    for h in &model.handlers {
        let HandlerFn {
            method,
            message,
            args,
            is_async,
            fallible,
            output,
            output_span,
            cfgs,
            ..
        } = h;
        let uses_ctx = args.iter().any(|a| matches!(a, Arg::Ctx(_)));
        let ctx = param(uses_ctx, "ctx");
        let call = call(
            krate,
            method,
            &call_args(krate, args, "msg", None),
            *is_async,
        );
        // What the method returns, checked against the message's response (or result).
        let returned = match output {
            Some(ty) if !has_impl_trait(ty) => ty.to_token_stream(),
            Some(_) => quote!(_),
            None => quote_spanned!(*output_span=> ()),
        };
        let helper = if *fallible {
            quote!(result)
        } else {
            quote!(response)
        };
        let span = *output_span;
        let convert = respan(quote!(#krate::__private::#helper), span);
        let convert = quote_spanned!(span=> #convert::<#message, #returned>(output));
        let span = message.span();
        let handler = respan(quote!(#krate::Handler<#message>), span);
        let response = respan(quote!(<#message as #krate::Message>::Response), span);
        let error = respan(quote!(<#message as #krate::Message>::Error), span);
        let result_ty = respan(quote!(::core::result::Result<#response, #error>), span);
        out.extend(quote! {
            #(#cfgs)*
            #[automatically_derived]
            impl #impl_generics #handler for #self_ty #where_clause {
                async fn handle(
                    &mut self,
                    msg: #message,
                    #ctx: &mut #krate::Context<Self>,
                ) -> #result_ty {
                    let output = #call;
                    #convert
                }
            }
        });
    }

    // The `Actor` impl: options, exposed messages, hooks, dynamic dispatch.
    let options = respan(
        quote!(<Self as #krate::__private::ActorOptions>),
        self_ty.span(),
    );
    let remote: Vec<TokenStream> = model
        .handlers
        .iter()
        .filter(|h| h.remote)
        .map(|h| {
            let (message, cfgs) = (&h.message, &h.cfgs);
            let entry = respan(
                quote!(#krate::__private::remote_entry::<#message>()),
                message.span(),
            );
            quote!(#(#cfgs)* #entry)
        })
        .collect();
    let remote = if remote.is_empty() {
        TokenStream::new()
    } else {
        quote!(const REMOTE: &'static [#krate::RemoteMessage] = &[#(#remote),*];)
    };

    let hooks = model.hooks.iter().map(|hook| generate_hook(hook, krate));

    let dispatch = if model.handlers.is_empty() {
        quote! {
            fn accepts(_: ::core::any::TypeId) -> bool {
                false
            }

            async fn handle_request(
                &mut self,
                request: #krate::RequestEnvelope,
                _: &mut #krate::Context<Self>,
            ) {
                request.reject();
            }
        }
    } else {
        let accepts = model.handlers.iter().map(|h| {
            let (message, cfgs) = (&h.message, &h.cfgs);
            let type_id = respan(
                quote!(::core::any::TypeId::of::<#message>()),
                message.span(),
            );
            quote! {
                #(#cfgs)*
                {
                    if message == #type_id {
                        return true;
                    }
                }
            }
        });
        let steps = model.handlers.iter().map(|h| {
            let (message, cfgs) = (&h.message, &h.cfgs);
            let step = respan(
                quote!(#krate::__private::dispatch::<Self, #message>(self, request, ctx).await),
                message.span(),
            );
            quote! {
                #(#cfgs)*
                let ::core::option::Option::Some(request) = #step else {
                    return;
                };
            }
        });
        quote! {
            fn accepts(message: ::core::any::TypeId) -> bool {
                #(#accepts)*
                false
            }

            async fn handle_request(
                &mut self,
                request: #krate::RequestEnvelope,
                ctx: &mut #krate::Context<Self>,
            ) {
                #(#steps)*
                request.reject();
            }
        }
    };

    out.extend(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Actor for #self_ty #where_clause {
            const URN: ::core::option::Option<&'static str> = #options::URN;
            const MAILBOX: #krate::MailboxConfig = #options::MAILBOX;
            #remote

            #(#hooks)*

            #dispatch
        }
    });
    out
}

fn generate_hook(hook: &HookFn, krate: &Path) -> TokenStream {
    let HookFn {
        hook: kind,
        method,
        args,
        is_async,
        fallible,
        output_span,
        cfgs,
    } = hook;
    let uses_ctx = args.iter().any(|a| matches!(a, Arg::Ctx(_)));
    let uses_payload = args.iter().any(|a| matches!(a, Arg::Payload(_)));
    let ctx = param(uses_ctx, "ctx");
    let (payload_name, _) = kind.payload().unwrap_or(("payload", ""));
    let payload = param(uses_payload, payload_name);
    let given = match kind {
        Hook::Start => None,
        Hook::Stop => Some(quote!(&#krate::StopReason)),
        Hook::Panic => Some(quote!(&str)),
        Hook::Event => Some(quote!(#krate::SupervisionEvent)),
        Hook::StreamFinished => Some(quote!(#krate::StreamId)),
    };
    let call = call(
        krate,
        method,
        &call_args(krate, args, payload_name, given.as_ref()),
        *is_async,
    );
    // A fallible hook's error becomes a `BoxError`; an infallible one answers `Ok`.
    let fallible_body = if *fallible {
        let convert = respan(
            quote!(#krate::__private::start_result(output)),
            *output_span,
        );
        quote! {
            let output = #call;
            #convert
        }
    } else {
        quote! {
            #call;
            ::core::result::Result::Ok(())
        }
    };
    match kind {
        Hook::Start => {
            let body = fallible_body;
            quote! {
                #(#cfgs)*
                async fn on_start(
                    &mut self,
                    #ctx: &mut #krate::Context<Self>,
                ) -> ::core::result::Result<(), #krate::BoxError> {
                    #body
                }
            }
        }
        Hook::Stop => quote! {
            #(#cfgs)*
            async fn on_stop(
                &mut self,
                #ctx: &mut #krate::Context<Self>,
                #payload: &#krate::StopReason,
            ) -> ::core::result::Result<(), #krate::BoxError> {
                #fallible_body
            }
        },
        Hook::Panic => quote! {
            #(#cfgs)*
            async fn on_panic(&mut self, #ctx: &mut #krate::Context<Self>, #payload: &str) {
                #call;
            }
        },
        Hook::Event => quote! {
            #(#cfgs)*
            async fn on_event(&mut self, #ctx: &mut #krate::Context<Self>, #payload: #krate::SupervisionEvent) {
                #call;
            }
        },
        Hook::StreamFinished => quote! {
            #(#cfgs)*
            async fn on_stream_finished(&mut self, #ctx: &mut #krate::Context<Self>, #payload: #krate::StreamId) {
                #call;
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_URN_LEN, validate_urn};

    #[test]
    fn urns_are_checked_by_the_runtime_rules() {
        assert_eq!(MAX_URN_LEN, conclib_core::MAX_URN_LEN);
        let long = "x".repeat(MAX_URN_LEN);
        let too_long = "x".repeat(MAX_URN_LEN + 1);
        for urn in [
            "",
            "a",
            "shop:counter",
            "a b",
            "a\tb",
            "a\nb",
            "x\u{7f}",
            "a\u{7}",
            "päivä",
            "a\u{a0}b",
            "a\u{2003}b",
            &long,
            &too_long,
        ] {
            assert_eq!(
                validate_urn(urn).is_ok(),
                conclib_core::validate_urn(urn).is_ok(),
                "{urn:?}"
            );
        }
    }
}
