//! Shared pieces: finding the `conclib` crate, reading option values, collecting errors.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Type};

/// The path generated code uses for the runtime: `crate = ...` if given, else the name under
/// which the user's `Cargo.toml` depends on `conclib` (or `conclib-core`), else `::conclib`.
pub fn crate_path(explicit: Option<Path>) -> Path {
    if let Some(path) = explicit {
        return path;
    }
    let found = crate_name("conclib").or_else(|_| {
        crate_name("conclib-core").map(|found| match found {
            FoundCrate::Itself => FoundCrate::Name("conclib_core".to_owned()),
            other => other,
        })
    });
    let name = match found {
        // Tests, examples and doctests of the facade itself reach it by its name.
        Ok(FoundCrate::Itself) | Err(_) => "conclib".to_owned(),
        Ok(FoundCrate::Name(name)) => name,
    };
    let ident = Ident::new(&name, Span::call_site());
    syn::parse_quote!(::#ident)
}

/// Errors gathered while validating, reported together.
#[derive(Default)]
pub struct Errors(Option<syn::Error>, usize);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        self.1 += 1;
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// How many errors were pushed so far.
    pub fn count(&self) -> usize {
        self.1
    }

    pub fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    pub fn into_compile_error(self) -> TokenStream {
        self.0
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// Stores an option's value, refusing a second one.
pub fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("`{key}` is given twice; keep one")));
    }
    *slot = Some(value);
    Ok(())
}

/// The value of `key = "..."`; anything but a string literal is an error at the value.
pub fn string_value(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<LitStr> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string literal, like `{key} = \"{example}\"`"),
        )),
    }
}

/// The value of `crate = path` (or `crate = "path"`, as serde spells it).
pub fn crate_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        lit.parse()
    } else {
        value.call(Path::parse_mod_style)
    }
}

/// The value of `key = Type`.
pub fn type_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Type> {
    meta.value()?.parse()
}

/// The last segment of a type's path, if it is a path.
pub fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// Whether a return type makes a handler fallible: its name is `Result` (`Result<T, E>`,
/// `std::result::Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, ...).
pub fn is_result(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Result")
}

/// Whether a type is spelled `Infallible` (`std::convert::Infallible`, `core::convert::Infallible`).
pub fn is_infallible(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Infallible" && s.arguments.is_none())
}

/// Whether a type is `()`.
pub fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        Type::Group(g) => is_unit(&g.elem),
        _ => false,
    }
}

/// The tokens with every span set to `span`, so that an error about them points there.
pub fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(g) = &tree {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tree = proc_macro2::TokenTree::Group(group);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
