//! `#[actor]` on a struct or an enum: the actor's options.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::{Generics, Ident, LitInt, LitStr, Path};

use crate::util::{crate_path, crate_value, set_once, string_value};

/// The longest URN the runtime accepts (`conclib_core::MAX_URN_LEN`).
const MAX_URN_LEN: usize = 256;

const STRUCT_KEYS: &str = "`urn = \"...\"`, `mailbox = <capacity>` or `mailbox = unbounded`, `cancel_on_timeout`, `crate = path`";
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
    /// `cancel_on_timeout`: `Actor::CANCEL_ON_TIMEOUT`.
    cancel_on_timeout: Option<Ident>,
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
        } else if meta.path.is_ident("cancel_on_timeout") {
            if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                return Err(meta.error(
                    "`cancel_on_timeout` takes no value: write `#[actor(cancel_on_timeout)]`",
                ));
            }
            let flag = meta.path.get_ident().cloned().expect("matched above");
            set_once(
                &mut options.cancel_on_timeout,
                flag,
                &meta,
                "cancel_on_timeout",
            )
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

pub fn expand_options(
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
            ::core::assert!(#krate::__private::validate_urn_const(#urn), "invalid URN in #[actor(urn = ...)]");
            ::core::option::Option::Some(#urn)
        }},
        None => quote!(::core::option::Option::None),
    };
    let mailbox = match &options.mailbox {
        Some(Mailbox::Bounded(n)) => {
            let n = LitInt::new(n.base10_digits(), n.span());
            quote!(#krate::__private::MailboxConfig::Bounded(#n))
        }
        Some(Mailbox::Unbounded) => quote!(#krate::__private::MailboxConfig::Unbounded),
        None => {
            quote!(#krate::__private::MailboxConfig::Bounded(#krate::__private::DEFAULT_MAILBOX_CAPACITY))
        }
    };
    let cancel_on_timeout = options.cancel_on_timeout.is_some();
    quote! {
        #item

        #[automatically_derived]
        impl #impl_generics #krate::__private::ActorOptions for #ident #type_generics #where_clause {
            const URN: ::core::option::Option<&'static str> = #urn;
            const MAILBOX: #krate::__private::MailboxConfig = #mailbox;
            const CANCEL_ON_TIMEOUT: bool = #cancel_on_timeout;
        }
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
