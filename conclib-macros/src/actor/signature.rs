//! Reading one method of an `#[actor]` impl block: its `#[handle]` options or hook role,
//! its signature (receiver, context, message or arguments, result), checked with spanned
//! errors.

use quote::{ToTokens, format_ident};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Generics, Ident, ImplItemFn, Pat, PatType, ReturnType, Type, TypeReference,
};

use super::generated::generated_form;
use super::model::{Arg, HandleOptions, HandlerFn, Hook, HookFn};
use super::types::cfgs;
use crate::util::{Errors, is_result, is_unit, last_segment};

/// What a method of the impl block is for.
pub(super) enum Role {
    Handle(HandleOptions),
    Hook(Hook),
}

pub(super) fn role_of(attr: &Attribute) -> Option<Result<Role, syn::Error>> {
    let path = attr.path();
    if path.is_ident("handle") {
        return Some(parse_handle_attr(attr).map(Role::Handle));
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

fn parse_handle_attr(attr: &Attribute) -> syn::Result<HandleOptions> {
    let mut options = HandleOptions::default();
    match &attr.meta {
        syn::Meta::Path(_) => {}
        syn::Meta::List(_) => attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("remote") {
                if options.remote {
                    return Err(meta.error("`remote` is given twice"));
                }
                options.remote = true;
                Ok(())
            } else if meta.path.is_ident("name") {
                let name = crate::util::string_value(&meta, "name", "AddItem")?;
                if syn::parse_str::<Ident>(&name.value()).is_err() {
                    return Err(syn::Error::new(
                        name.span(),
                        "`name` is the type name of the message this method generates: an identifier like \"AddItem\"",
                    ));
                }
                crate::util::set_once(&mut options.name, name, &meta, "name")
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                Err(meta.error(format!(
                    "unknown option `{key}` of #[handle]; it accepts `remote` (exposes the message to other processes) \
                     and `name = \"...\"` (names the message the method generates)"
                )))
            }
        })?,
        syn::Meta::NameValue(nv) => {
            return Err(syn::Error::new_spanned(
                nv,
                "write `#[handle]`, `#[handle(remote)]` or `#[handle(name = \"...\")]`",
            ));
        }
    }
    Ok(options)
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
    // The actor's context always has its actor as argument (`Context<Self>`): a type of
    // another crate that is merely named `Context` (a template's, `opentelemetry::Context`)
    // is a plain argument.
    last_segment(inner).is_some_and(|s| {
        s.ident == "Context" && matches!(s.arguments, syn::PathArguments::AngleBracketed(_))
    })
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
fn classify_args<'a>(f: &'a ImplItemFn, errors: &mut Errors) -> (Vec<Arg>, Vec<&'a PatType>) {
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
            payloads.push(pt);
            args.push(Arg::Payload(pt.ty.clone()));
        }
    }
    (args, payloads)
}

/// Types of `std` (and common crates) that are plain values although named like structs: a
/// `#[handle]` method taking one of them generates its message.
const VALUE_TYPES: &[&str] = &[
    "String",
    "Vec",
    "Option",
    "Box",
    "Arc",
    "Rc",
    "HashMap",
    "HashSet",
    "BTreeMap",
    "BTreeSet",
    "VecDeque",
    "BinaryHeap",
    "Duration",
    "Instant",
    "SystemTime",
    "PathBuf",
    "OsString",
    "Cow",
    "Result",
    "Bytes",
    "Uuid",
    "Url",
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
];

/// Names a method of the generated API cannot have: the own methods of the refs it is
/// implemented for (`ActorRef`, `Pool`, `ProcessRef`, `RemoteRef`), which would hide it
/// without a word, and of the request builders. A test below reads those types' sources and
/// fails when one gains a method this list lacks; the facade's `#[actor]` docs list it too.
const RESERVED: &[&str] = &[
    "ask",
    "tell",
    "try_ask",
    "try_tell",
    "timeout",
    "priority",
    "stop",
    "kill",
    "wait_for_stop",
    "id",
    "urn",
    "is_alive",
    "mailbox_len",
    "asks_skipped",
    "recipient",
    "to_dyn",
    "pid",
    "restarts",
    "stats",
    "members",
    "resize",
    "broadcast",
    "client",
    "clone",
    "into_future",
    "poll",
    // Methods of the std prelude's traits, in scope wherever the refs are used (`PartialEq`,
    // `Into`, `TryInto`, `ToOwned`, `Clone`): a call is ambiguous, or resolves to the trait's
    // method without a word. (`Requester::request` is in scope only where conclib's prelude
    // is imported, and a call there is an explicit ambiguity error: `request` stays allowed.)
    "eq",
    "ne",
    "into",
    "try_into",
    "to_owned",
    "clone_into",
    "clone_from",
];

/// Whether the only argument of a `#[handle]` method is its message (`msg: Ping`), not a plain
/// value (`n: u64`, `name: String`, `item: T`): a path type named like a struct, not a `std`
/// value type nor a type parameter of the impl block.
fn is_message_type(ty: &Type, generics: &Generics) -> bool {
    let Type::Path(p) = ty else { return false };
    if p.qself.is_some() || generics.type_params().any(|t| p.path.is_ident(&t.ident)) {
        return false;
    }
    let Some(segment) = p.path.segments.last() else {
        return false;
    };
    let name = segment.ident.to_string();
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name != "Self"
        && !VALUE_TYPES.contains(&name.as_str())
}

pub(super) fn parse_handler(
    f: &ImplItemFn,
    options: &HandleOptions,
    generics: &Generics,
    errors: &mut Errors,
) -> Option<HandlerFn> {
    const WHAT: &str = "a #[handle] method";
    const EXAMPLE: &str = "fn add(&mut self, n: u64, ctx: &mut Context<Self>) -> u64";
    let ok = check_common(f, WHAT, EXAMPLE, errors);
    let (args, payloads) = classify_args(f, errors);
    let method = f.sig.ident.clone();
    if RESERVED.contains(&method.to_string().as_str()) {
        errors.spanned(
            &method,
            format!(
                "a #[handle] method cannot be named `{method}`: `counter.{method}(..)` already means the ref's, the \
                 request builder's or a trait's own `{method}`, which would hide this method in the generated API; rename it"
            ),
        );
    }
    for payload in &payloads {
        if is_misused_ctx(&payload.ty) {
            errors.spanned(
                &payload.ty,
                "the context is taken by mutable reference: `ctx: &mut Context<Self>`",
            );
            return None;
        }
    }
    let (fallible, output, output_span) = match &f.sig.output {
        ReturnType::Default => (false, None, f.sig.ident.span()),
        ReturnType::Type(_, ty) => (is_result(ty), Some((**ty).clone()), ty.span()),
    };
    let docs: Vec<Attribute> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    let mut handler = HandlerFn {
        method: method.clone(),
        message: syn::parse_quote!(()),
        generated: None,
        param: format_ident!("message"),
        args: Vec::new(),
        is_async: f.sig.asyncness.is_some(),
        fallible,
        output,
        output_span,
        remote: options.remote,
        cfgs: cfgs(&f.attrs),
        docs,
        vis: f.vis.clone(),
    };

    // The message-struct form: `fn ping(&mut self, msg: Ping) -> Pong`.
    if let [only] = payloads.as_slice()
        && options.name.is_none()
        && is_message_type(&only.ty, generics)
    {
        if let Pat::Ident(p) = &*only.pat {
            handler.param = Ident::new(p.ident.to_string().trim_start_matches('_'), p.ident.span());
            if handler.param.to_string().is_empty() {
                handler.param = format_ident!("message");
            }
        }
        handler.message = (*only.ty).clone();
        handler.args = args;
        return ok.then_some(handler);
    }

    // The generated form: the arguments become the fields of a message named after the method.
    generated_form(handler, args, &payloads, options, generics, errors, ok)
}

pub(super) fn parse_hook(f: &ImplItemFn, hook: Hook, errors: &mut Errors) -> Option<HookFn> {
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
    for extra in payloads.iter().skip(allowed).map(|p| &*p.ty) {
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

#[cfg(test)]
mod tests {
    use super::RESERVED;

    /// The `pub fn` names of the inherent impl blocks of `ty` in a source file (a plain
    /// reading of the source: impl headers at depth 0, methods at depth 1).
    fn inherent_methods(source: &str, ty: &str) -> Vec<String> {
        let mut names = Vec::new();
        let (mut depth, mut inside) = (0i32, false);
        for line in source.lines() {
            let s = line.trim();
            if depth == 0 && s.starts_with("impl") && !s.contains(" for ") {
                let header = s.split('{').next().unwrap_or_default();
                inside = header
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|word| word == ty);
            }
            if inside && depth == 1 {
                let rest = s
                    .strip_prefix("pub fn ")
                    .or_else(|| s.strip_prefix("pub async fn "))
                    .or_else(|| s.strip_prefix("pub const fn "));
                if let Some(rest) = rest {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    names.push(name);
                }
            }
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth == 0 {
                inside = false;
            }
        }
        names
    }

    /// Every method of a ref the generated API is implemented for is reserved: a handler of
    /// that name would be hidden by it (a `#[handle] fn stats` on a `Pool`).
    #[test]
    fn every_method_of_the_refs_is_reserved() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let refs = [
            ("conclib-core/src/send/actor_ref.rs", "ActorRef"),
            ("conclib-core/src/dynamic/mod.rs", "ActorRef"),
            ("conclib-core/src/pool/mod.rs", "Pool"),
            ("conclib-process/src/process_ref.rs", "ProcessRef"),
            ("conclib-redis/src/client/remote.rs", "RemoteRef"),
        ];
        let mut seen = 0;
        for (file, ty) in refs {
            let source = std::fs::read_to_string(root.join(file)).expect(file);
            let methods = inherent_methods(&source, ty);
            assert!(!methods.is_empty(), "no methods of {ty} found in {file}");
            seen += methods.len();
            for method in methods {
                assert!(
                    RESERVED.contains(&method.as_str()),
                    "{ty}::{method} ({file}) is not in RESERVED: a handler named `{method}` would be hidden by it"
                );
            }
        }
        assert!(
            seen > 20,
            "only {seen} methods found: the reading of the sources broke"
        );
    }

    /// The facade's `#[actor]` docs name every reserved method.
    #[test]
    fn the_docs_list_every_reserved_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let docs = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        for name in RESERVED {
            assert!(
                docs.contains(&format!("`{name}`")),
                "src/lib.rs's #[actor] docs do not name the reserved method `{name}`"
            );
        }
    }

    #[test]
    fn reads_methods_of_inherent_impls_only() {
        let source = "impl<A> Pool<A> {\n    pub fn stats(&self) {}\n    fn hidden() {}\n}\nimpl Clone for Pool<A> {\n    pub fn nope() {}\n}\n";
        assert_eq!(inherent_methods(source, "Pool"), ["stats"]);
    }
}
