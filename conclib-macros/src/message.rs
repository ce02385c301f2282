//! `#[message]`: parse the options, check the item, implement `Message`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{GenericParam, Generics, Ident, Item, LitInt, LitStr, Path, Type};

use crate::util::{
    Errors, crate_path, crate_value, is_infallible, set_once, string_value, type_value,
};

const KEYS: &str =
    "`response = Type`, `error = Type`, `name = \"...\"`, `version = N`, `crate = path`";

/// The options of `#[message(...)]`.
#[derive(Default)]
pub struct Options {
    pub response: Option<Type>,
    pub error: Option<Type>,
    pub name: Option<LitStr>,
    /// `version = N`: the message's fields' version (`Message::version`), 1 or more.
    pub version: Option<LitInt>,
    pub krate: Option<Path>,
}

impl Options {
    fn parse(args: TokenStream) -> syn::Result<Self> {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("response") {
                set_once(&mut options.response, type_value(&meta)?, &meta, "response")
            } else if meta.path.is_ident("error") {
                set_once(&mut options.error, type_value(&meta)?, &meta, "error")
            } else if meta.path.is_ident("name") {
                let name = string_value(&meta, "name", "Ping")?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(
                        name.span(),
                        "a message's wire name cannot be empty",
                    ));
                }
                set_once(&mut options.name, name, &meta, "name")
            } else if meta.path.is_ident("version") {
                let version: LitInt = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "`version` takes a number, like `version = 2`")
                })?;
                if !matches!(version.base10_parse::<u32>(), Ok(v) if v >= 1) {
                    return Err(syn::Error::new(
                        version.span(),
                        "a message's version is a number from 1 to 4294967295",
                    ));
                }
                set_once(&mut options.version, version, &meta, "version")
            } else if meta.path.is_ident("crate") {
                set_once(&mut options.krate, crate_value(&meta)?, &meta, "crate")
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                Err(meta.error(format!(
                    "unknown option `{key}` of #[message]; it accepts {KEYS}"
                )))
            }
        });
        parser.parse2(args)?;
        Ok(options)
    }
}

/// What `#[message]` implements `Message` for.
pub struct Model {
    pub ident: Ident,
    pub generics: Generics,
    pub options: Options,
}

pub fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return e.into_compile_error(),
    };
    match parse(args, &item) {
        Ok(model) => {
            let generated = generate(&model);
            quote! { #item #generated }
        }
        Err(e) => {
            let e = e.into_compile_error();
            quote! { #item #e }
        }
    }
}

fn parse(args: TokenStream, item: &Item) -> syn::Result<Model> {
    let mut errors = Errors::default();
    let options = Options::parse(args).unwrap_or_else(|e| {
        errors.push(e);
        Options::default()
    });
    let (ident, generics) = match item {
        Item::Struct(s) => (&s.ident, &s.generics),
        Item::Enum(e) => (&e.ident, &e.generics),
        other => {
            let (tokens, what) = describe(other);
            errors.spanned(
                tokens,
                format!(
                    "#[message] goes on a struct or an enum, not on {what}: a message is a value sent to an actor"
                ),
            );
            return Err(errors.finish().expect_err("an error was pushed"));
        }
    };
    for param in &generics.params {
        if let GenericParam::Lifetime(l) = param {
            errors.spanned(
                &l.lifetime,
                format!(
                    "a message cannot borrow: it is sent to another task, so it must be `'static`; \
                     remove the lifetime `{}` and hold owned data (`String`, `Vec<T>`, `Arc<T>`)",
                    l.lifetime
                ),
            );
        }
    }
    for (key, ty) in [("response", &options.response), ("error", &options.error)] {
        if let Some(borrowed) = ty.as_ref().and_then(borrowing) {
            let owned = match &*borrowed.elem {
                Type::Path(p) if p.path.is_ident("str") => "`String`".to_owned(),
                Type::Slice(s) => format!("`Vec<{}>`", s.elem.to_token_stream()),
                _ => "an owned value or an `Arc<T>`".to_owned(),
            };
            errors.spanned(
                borrowed,
                format!(
                    "a message's {key} cannot borrow: it is sent back to the asker from the actor's task \
                     (or another process), so it must be `'static`; use {owned} instead of `{}`",
                    borrowed.to_token_stream().to_string().replace("& ", "&")
                ),
            );
        }
    }
    errors.finish()?;
    Ok(Model {
        ident: ident.clone(),
        generics: generics.clone(),
        options,
    })
}

/// The first reference in `ty` that is not `&'static` (in the type itself, its generic
/// arguments, tuples, slices and arrays).
fn borrowing(ty: &Type) -> Option<&syn::TypeReference> {
    match ty {
        Type::Reference(r) => match &r.lifetime {
            Some(l) if l.ident == "static" => borrowing(&r.elem),
            _ => Some(r),
        },
        Type::Path(p) => p
            .path
            .segments
            .iter()
            .find_map(|segment| match &segment.arguments {
                syn::PathArguments::AngleBracketed(args) => {
                    args.args.iter().find_map(|arg| match arg {
                        syn::GenericArgument::Type(t) => borrowing(t),
                        _ => None,
                    })
                }
                _ => None,
            }),
        Type::Tuple(t) => t.elems.iter().find_map(borrowing),
        Type::Slice(s) => borrowing(&s.elem),
        Type::Array(a) => borrowing(&a.elem),
        Type::Paren(p) => borrowing(&p.elem),
        Type::Group(g) => borrowing(&g.elem),
        _ => None,
    }
}

/// The tokens to point at, and how to call an item that cannot be a message.
fn describe(item: &Item) -> (TokenStream, &'static str) {
    match item {
        Item::Fn(f) => {
            let (fn_token, ident) = (&f.sig.fn_token, &f.sig.ident);
            (quote!(#fn_token #ident), "a function")
        }
        Item::Union(u) => {
            let (union_token, ident) = (&u.union_token, &u.ident);
            (quote!(#union_token #ident), "a union")
        }
        Item::Trait(t) => {
            let (trait_token, ident) = (&t.trait_token, &t.ident);
            (quote!(#trait_token #ident), "a trait")
        }
        Item::Type(t) => {
            let (type_token, ident) = (&t.type_token, &t.ident);
            (
                quote!(#type_token #ident),
                "a type alias (put it on the type's definition)",
            )
        }
        Item::Impl(i) => {
            let (impl_token, ty) = (&i.impl_token, &i.self_ty);
            (
                quote!(#impl_token #ty),
                "an impl block (put it on the type's definition)",
            )
        }
        Item::Const(c) => {
            let (const_token, ident) = (&c.const_token, &c.ident);
            (quote!(#const_token #ident), "a constant")
        }
        Item::Static(s) => {
            let (static_token, ident) = (&s.static_token, &s.ident);
            (quote!(#static_token #ident), "a static")
        }
        Item::Mod(m) => {
            let (mod_token, ident) = (&m.mod_token, &m.ident);
            (quote!(#mod_token #ident), "a module")
        }
        other => (other.to_token_stream(), "this item"),
    }
}

pub fn generate(model: &Model) -> TokenStream {
    let Model {
        ident,
        generics,
        options,
    } = model;
    let krate = crate_path(options.krate.clone());

    // A generic message is a message for every instantiation whose parameters can travel.
    let mut generics = generics.clone();
    let type_params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
    if !type_params.is_empty() {
        let where_clause = generics.make_where_clause();
        for param in &type_params {
            where_clause
                .predicates
                .push(syn::parse_quote!(#param: ::core::marker::Send + 'static));
        }
    }
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();

    let response = options
        .response
        .as_ref()
        .map_or_else(|| quote!(()), ToTokens::to_token_stream);
    let error = options.error.as_ref().map_or_else(
        || quote!(::core::convert::Infallible),
        ToTokens::to_token_stream,
    );
    let wire_error = match &options.error {
        Some(ty) if !is_infallible(ty) => ty.to_token_stream(),
        _ => quote!(#krate::__private::NoError),
    };

    let name = match &options.name {
        Some(name) => name.to_token_stream(),
        None if generics.params.is_empty() => {
            LitStr::new(&ident.to_string(), ident.span()).to_token_stream()
        }
        None => {
            // `Wrap<u32>`: the identifier and the arguments (types by `type_name`, constants by value).
            let mut format = format!("{ident}<");
            let mut args = Vec::new();
            for (i, param) in generics.params.iter().enumerate() {
                if i > 0 {
                    format.push_str(", ");
                }
                format.push_str("{}");
                match param {
                    GenericParam::Type(t) => {
                        let t = &t.ident;
                        args.push(quote!(::core::any::type_name::<#t>()));
                    }
                    GenericParam::Const(c) => {
                        let c = &c.ident;
                        args.push(quote!(#c));
                    }
                    GenericParam::Lifetime(_) => unreachable!("refused in parse"),
                }
            }
            format.push('>');
            quote! {
                #krate::__private::generic_name(::core::any::TypeId::of::<Self>(), || {
                    ::std::format!(#format, #(#args),*)
                })
            }
        }
    };

    let version = options.version.as_ref().map(|v| {
        quote! {
            #[inline]
            fn version() -> u32 {
                #v
            }
        }
    });

    // Unsatisfied bounds on the response or error point at the option that names them.
    let response_item = quote_spanned!(response.span()=> type Response = #response;);
    let error_item = quote_spanned!(error.span()=> type Error = #error;);

    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::__private::Message for #ident #type_generics #where_clause {
            #response_item
            #error_item
            #[inline]
            fn name() -> &'static str {
                #name
            }
            #version
        }

        #[automatically_derived]
        impl #impl_generics #krate::__private::MessageDecl for #ident #type_generics #where_clause {
            type WireError = #wire_error;
        }
    }
}
