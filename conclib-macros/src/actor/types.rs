//! What the `#[actor]` macro asks of types and tokens, whichever stage asks: names made from
//! methods, whether a type mentions `Self` or a generic parameter, the parts of a `Result`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, GenericArgument, Ident, PathArguments, Type};

use crate::util::last_segment;

/// The `#[cfg]` attributes among `attrs`.
pub(super) fn cfgs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect()
}

/// `add_item` -> `AddItem`.
pub(super) fn upper_camel(method: &Ident) -> Ident {
    let name = method.to_string();
    let name = name.trim_start_matches("r#");
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Ident::new(&out, method.span())
}

/// Whether tokens name one of `names` (a generic parameter), or `Self`.
pub fn mentions(tokens: TokenStream, names: &[Ident]) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => names.contains(&i),
        proc_macro2::TokenTree::Group(g) => mentions(g.stream(), names),
        _ => false,
    })
}

pub(super) fn mentions_self(ty: &Type) -> bool {
    mentions(
        ty.to_token_stream(),
        &[Ident::new("Self", Span::call_site())],
    )
}

/// Whether a type names something that cannot be written in an expression (`impl Trait`),
/// at any depth.
pub fn has_impl_trait(ty: &Type) -> bool {
    mentions(
        ty.to_token_stream(),
        &[Ident::new("impl", Span::call_site())],
    )
}

/// `T` and `E` of a return type `Result<T, E>`.
pub(super) fn result_parts(ty: &Type) -> Option<(Type, Type)> {
    let segment = last_segment(ty)?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(t), Some(e), None) => Some((t, e)),
        _ => None,
    }
}
