//! The generated form of a `#[handle]` method (`fn add(&mut self, n: u64) -> u64`): its
//! arguments become the fields of a message named after the method, its return type the
//! message's response (and error). Checked with spanned errors; the result is data for
//! `generate` and `api`.

use quote::ToTokens;
use syn::{Generics, Ident, Pat, PatType, Type};

use super::model::HandleOptions;
use super::model::{Arg, GeneratedMessage, HandlerFn};
use super::types::{has_impl_trait, mentions, mentions_self, result_parts, upper_camel};
use crate::util::Errors;

/// Completes `handler` in the generated form: the message's name, fields, response and
/// error, and the call's arguments read from its fields. `ok`: the common checks passed.
pub(super) fn generated_form(
    mut handler: HandlerFn,
    mut args: Vec<Arg>,
    payloads: &[&PatType],
    options: &HandleOptions,
    generics: &Generics,
    errors: &mut Errors,
    ok: bool,
) -> Option<HandlerFn> {
    let fallible = handler.fallible;
    let method = handler.method.clone();
    let before = errors.count();
    let ident = match &options.name {
        Some(name) => Ident::new(&name.value(), name.span()),
        None => upper_camel(&method),
    };
    let mut fields = Vec::new();
    for payload in payloads {
        let ty = &*payload.ty;
        match ty {
            Type::Reference(_) => errors.spanned(
                ty,
                "the arguments of a #[handle] method travel in the message it generates, by value: \
                 take an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
            ),
            _ if has_impl_trait(ty) => errors.spanned(
                ty,
                "an argument of a #[handle] method becomes a field of its message: name its type instead of `impl Trait`",
            ),
            _ if mentions_self(ty) => errors.spanned(
                ty,
                "an argument of a #[handle] method becomes a field of its message, where `Self` means the message: \
                 write the actor's type instead",
            ),
            _ => {}
        }
        match &*payload.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                // As written, raw (`r#in`) or not: a keyword is a field only as a raw
                // identifier (serde names it without the `r#`).
                fields.push((p.ident.clone(), ty.clone()));
            }
            other => errors.spanned(
                other,
                format!(
                    "name this argument (`value: {}`): it becomes a field of the message `{ident}` that this method generates",
                    ty.to_token_stream().to_string().replace(' ', "")
                ),
            ),
        }
    }
    // The generated struct would shadow a type of the same name used in the signature.
    let own = std::slice::from_ref(&ident);
    let clash = fields
        .iter()
        .map(|(_, ty)| ty)
        .chain(handler.output.as_ref())
        .find(|ty| mentions(ty.to_token_stream(), own));
    if let Some(ty) = clash {
        errors.spanned(
            ty,
            format!(
                "this method generates a message named `{ident}` from its arguments, and its signature uses a type \
                 `{ident}` too: to handle the message `{ident}`, take it as the only argument besides the context; \
                 otherwise name the generated message with `#[handle(name = \"...\")]`"
            ),
        );
    }
    let (response, error) = match &handler.output {
        None => (syn::parse_quote!(()), None),
        Some(ty) if has_impl_trait(ty) || mentions_self(ty) => {
            errors.spanned(
                ty,
                "the return type of a #[handle] method is the response of the message it generates: \
                 name it, without `impl Trait` or `Self`",
            );
            return None;
        }
        Some(ty) if fallible => match result_parts(ty) {
            Some((t, e)) => (t, Some(e)),
            None => {
                errors.spanned(
                    ty,
                    "write the result in full, `Result<T, E>`: `T` is the response and `E` the error of the message \
                     this method generates",
                );
                return None;
            }
        },
        Some(ty) => (ty.clone(), None),
    };
    if !ok || errors.count() > before {
        return None;
    }
    let params: Vec<Ident> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(t.ident.clone()),
            syn::GenericParam::Const(c) => Some(c.ident.clone()),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let in_fields = |name: &Ident| {
        fields
            .iter()
            .any(|(_, ty)| mentions(ty.to_token_stream(), std::slice::from_ref(name)))
    };
    let generic = params.iter().any(in_fields)
        || mentions(response.to_token_stream(), &params)
        || error
            .as_ref()
            .is_some_and(|e| mentions(e.to_token_stream(), &params));
    // Unused const parameters are allowed in a struct; unused type parameters are not.
    let marker = generic && !generics.type_params().all(|t| in_fields(&t.ident));
    handler.message = if generic {
        let (_, type_generics, _) = generics.split_for_impl();
        syn::parse_quote!(#ident #type_generics)
    } else {
        syn::parse_quote!(#ident)
    };
    let mut field_names = fields.iter().map(|(name, _)| name.clone());
    handler.args = args
        .drain(..)
        .map(|a| match a {
            Arg::Payload(_) => Arg::Field(field_names.next().expect("one field per payload")),
            other => other,
        })
        .collect();
    handler.generated = Some(GeneratedMessage {
        ident,
        fields,
        response,
        error,
        generic,
        marker,
    });
    Some(handler)
}
