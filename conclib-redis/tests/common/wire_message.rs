//! `wire_message!`: a message with a wire name, a response and a `String` error, for test
//! binaries whose peers stay on the core crate.

/// A message with a wire name, a response and a `String` error (what `#[message]` writes;
/// these tests stay on the core crate).
macro_rules! wire_message {
    ($(#[$doc:meta])* $ty:ident $(($field:ty))?, $name:literal, $response:ty) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        pub(crate) struct $ty $((pub(crate) $field))?;
        impl conclib_core::MessageDecl for $ty {
            type WireError = String;
        }
        impl Message for $ty {
            type Response = $response;
            type Error = String;
            fn name() -> &'static str {
                $name
            }
        }
    };
}
