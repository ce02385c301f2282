//! `#[actor]`: on a struct or enum, the actor's options; on its impl block, the `Actor` and
//! `Handler` impls.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::{Item, ItemImpl, Path};

use crate::util::{Errors, crate_path, crate_value, set_once};
use generate::{fallback_impl, generate_impl};
use options::expand_options;
use parse::parse_impl;

mod api;
mod generate;
mod generated;
mod model;
mod options;
mod parse;
mod signature;
mod types;

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
// On the impl block.

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
            let api = api::generate(&item, &model, &krate);
            quote! { #item #generated #api }
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
