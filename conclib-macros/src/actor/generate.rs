//! `#[actor]` on an impl block: the `Actor` and `Handler` impls.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemImpl, Path};

use super::model::{Arg, HandlerFn, Hook, HookFn, ImplModel};
use super::types::has_impl_trait;
use crate::util::respan;

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
            Arg::Field(name) => name.to_token_stream(),
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
pub fn fallback_impl(item: &ItemImpl, krate: &Path) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    quote! {
        impl #impl_generics #krate::__private::Actor for #self_ty #where_clause {}
    }
}

pub fn generate_impl(item: &ItemImpl, model: &ImplModel, krate: &Path) -> TokenStream {
    let mut out = TokenStream::new();
    for h in &model.handlers {
        out.extend(handler_impl(item, h, krate));
    }
    out.extend(actor_impl(item, model, krate));
    out
}

/// One `Handler` impl for a #[handle] method (and its `RemoteHandler` impl if remote).
fn handler_impl(item: &ItemImpl, h: &HandlerFn, krate: &Path) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let mut out = TokenStream::new();
    let HandlerFn {
        method,
        message,
        args,
        is_async,
        fallible,
        output,
        output_span,
        cfgs,
        generated,
        ..
    } = h;
    // A generated message is taken apart into the method's arguments.
    let unpack = generated.as_ref().map(|g| {
        let ident = &g.ident;
        let fields = g.fields.iter().map(|(name, _)| name);
        // What an argument must be to travel in a message, said at its type.
        let checks = g.fields.iter().map(|(_, ty)| {
            let span = ty.span();
            let send = respan(quote!(#krate::__private::message_argument::<#ty>), span);
            let serde = h
                .remote
                .then(|| respan(quote!(#krate::__private::remote_argument::<#ty>), span))
                .map(|check| quote!(#check();));
            quote!(#send(); #serde)
        });
        quote! {
            #(#checks)*
            let #ident { #(#fields,)* .. } = msg;
        }
    });
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
    if h.remote {
        let remote_handler = respan(quote!(#krate::__private::RemoteHandler<#message>), span);
        out.extend(quote! {
            #(#cfgs)*
            #[automatically_derived]
            impl #impl_generics #remote_handler for #self_ty #where_clause {}
        });
    }
    let handler = respan(quote!(#krate::__private::Handler<#message>), span);
    let response = respan(
        quote!(<#message as #krate::__private::Message>::Response),
        span,
    );
    let error = respan(
        quote!(<#message as #krate::__private::Message>::Error),
        span,
    );
    let result_ty = respan(quote!(::core::result::Result<#response, #error>), span);
    out.extend(quote! {
        #(#cfgs)*
        #[automatically_derived]
        impl #impl_generics #handler for #self_ty #where_clause {
            async fn handle(
                &mut self,
                msg: #message,
                #ctx: &mut #krate::__private::Context<Self>,
            ) -> #result_ty {
                #unpack
                let output = #call;
                #convert
            }
        }
    });
    out
}

/// The `Actor` impl: options, exposed messages, hooks, dynamic dispatch.
fn actor_impl(item: &ItemImpl, model: &ImplModel, krate: &Path) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let options = respan(
        quote!(<Self as #krate::__private::ActorOptions>),
        self_ty.span(),
    );
    let remote = remote_table(model, krate);
    let hooks = model.hooks.iter().map(|hook| generate_hook(hook, krate));
    let dispatch = dispatch(model, krate);
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::__private::Actor for #self_ty #where_clause {
            const URN: ::core::option::Option<&'static str> = #options::URN;
            const MAILBOX: #krate::__private::MailboxConfig = #options::MAILBOX;
            const CANCEL_ON_TIMEOUT: bool = #options::CANCEL_ON_TIMEOUT;
            #remote

            #(#hooks)*

            #dispatch
        }
    }
}

/// `Actor::REMOTE`: the messages exposed to other processes (nothing when none is).
fn remote_table(model: &ImplModel, krate: &Path) -> TokenStream {
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
    if remote.is_empty() {
        TokenStream::new()
    } else {
        quote!(const REMOTE: &'static [#krate::__private::ExposedMessage] = &[#(#remote),*];)
    }
}

/// `accepts` and `handle_request`: a request tried against each handler's message in turn.
fn dispatch(model: &ImplModel, krate: &Path) -> TokenStream {
    if model.handlers.is_empty() {
        quote! {
            fn accepts(_: ::core::any::TypeId) -> bool {
                false
            }

            async fn handle_request(
                &mut self,
                request: #krate::__private::RequestEnvelope,
                _: &mut #krate::__private::Context<Self>,
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
                request: #krate::__private::RequestEnvelope,
                ctx: &mut #krate::__private::Context<Self>,
            ) {
                #(#steps)*
                request.reject();
            }
        }
    }
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
        Hook::Stop => Some(quote!(&#krate::__private::StopReason)),
        Hook::Panic => Some(quote!(&str)),
        Hook::Event => Some(quote!(#krate::__private::SupervisionEvent)),
        Hook::StreamFinished => Some(quote!(#krate::__private::StreamId)),
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
                    #ctx: &mut #krate::__private::Context<Self>,
                ) -> ::core::result::Result<(), #krate::__private::BoxError> {
                    #body
                }
            }
        }
        Hook::Stop => quote! {
            #(#cfgs)*
            async fn on_stop(
                &mut self,
                #ctx: &mut #krate::__private::Context<Self>,
                #payload: &#krate::__private::StopReason,
            ) -> ::core::result::Result<(), #krate::__private::BoxError> {
                #fallible_body
            }
        },
        Hook::Panic => quote! {
            #(#cfgs)*
            async fn on_panic(&mut self, #ctx: &mut #krate::__private::Context<Self>, #payload: &str) {
                #call;
            }
        },
        Hook::Event => quote! {
            #(#cfgs)*
            async fn on_event(&mut self, #ctx: &mut #krate::__private::Context<Self>, #payload: #krate::__private::SupervisionEvent) {
                #call;
            }
        },
        Hook::StreamFinished => quote! {
            #(#cfgs)*
            async fn on_stream_finished(&mut self, #ctx: &mut #krate::__private::Context<Self>, #payload: #krate::__private::StreamId) {
                #call;
            }
        },
    }
}
