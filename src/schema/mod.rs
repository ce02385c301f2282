//! What a service's actors expose through the Redis proxy, as one JSON document: the input
//! of the Python stub generator (`python -m conclib.stubgen schema.json -o api.py`, see
//! `python/README.md`). Feature `schema`.
//!
//! For each actor: its type name, its URN and its exposed messages; for each message its
//! wire name ([`Message::name`]) and the JSON Schemas (draft 2020-12, made by
//! [`schemars`]) of the message, its response and its error. Named types appear once,
//! under `$defs`:
//!
//! ```json
//! {"conclib_schema": 1,
//!  "actors": [{"name": "Counter", "urn": "counter", "messages": [
//!     {"name": "Add", "request": {"$ref": "#/$defs/Add"}, "response": {"type": "integer", ...},
//!      "error": {"type": "string"}}]}],
//!  "$defs": {"Add": {"type": "object", "properties": {"n": ...}, "required": ["n"]}}}
//! ```
//!
//! Whether two builds may serve side by side during a rolling upgrade: [`compare`] their
//! documents (the `conclib-schema check OLD NEW` command does it in CI; see
//! [`compare`]'s module table for what is breaking).
//!
//! `error` is `null` for a message that cannot fail. A type that travels as MessagePack
//! `bin` (`serde_bytes`) should describe itself as `{"type": "string", "x-conclib-bin":
//! true}` (a hand-written [`JsonSchema`] impl): the stubs then use `bytes`.
//!
//! Every message, response and error type derives [`JsonSchema`] (from the `schemars`
//! crate, version 1, re-exported here). [`ActorExport::done`] checks that the messages
//! described are exactly those the actor exposes (its `#[handle(remote)]` handlers,
//! [`Actor::REMOTE`]): a schema that forgot one, or listed one the proxy would refuse,
//! panics rather than lies.
//!
//! ```
//! use conclib::schema::Export;
//! use conclib::{actor, message};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! /// Adds `n`; fails with "overflow".
//! #[message(response = u64, error = String)]
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Add {
//!     n: u64,
//! }
//!
//! /// Reads the total.
//! #[message(response = u64)]
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Get;
//!
//! #[actor(urn = "counter")]
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! #[actor]
//! impl Counter {
//!     #[handle(remote)]
//!     fn add(&mut self, Add { n }: Add) -> Result<u64, String> {
//!         self.0 = self.0.checked_add(n).ok_or("overflow")?;
//!         Ok(self.0)
//!     }
//!
//!     #[handle(remote)]
//!     fn get(&mut self, _: Get) -> u64 {
//!         self.0
//!     }
//! }
//!
//! let mut export = Export::new();
//! export
//!     .actor::<Counter>() // served at its #[actor(urn)]; `actor_at` names another
//!     .message::<Add>() // may fail: its error type is described
//!     .infallible::<Get>() // `Error = Infallible`
//!     .done();
//! let json: String = export.to_string_pretty();
//! // A service would print it for a flag of its own (`my-service --export-schema`),
//! // or write it to a file: `python -m conclib.stubgen schema.json -o api.py`.
//! let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
//! assert_eq!(doc["actors"][0]["urn"], "counter");
//! assert_eq!(doc["actors"][0]["messages"][0]["name"], "Add");
//! assert_eq!(doc["actors"][0]["messages"][1]["error"], serde_json::Value::Null);
//! assert!(doc["$defs"]["Add"].is_object());
//! ```

mod compat;

pub use compat::{Change, ChangeKind, Compatibility, FORMAT_VERSION, SchemaDocumentError, compare};

use std::convert::Infallible;
use std::marker::PhantomData;

use conclib_core::{Actor, Message};
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
// Not re-exported: a service derives `JsonSchema` from its own `schemars` dependency. (A public
// re-export also changed the paths rustc prints in the compile-fail tests' expected output.)
use schemars::JsonSchema;
use serde_json::{Value, json};

/// Collects the description of a service's actors, sharing one set of type definitions.
pub struct Export {
    generator: SchemaGenerator,
    actors: Vec<Value>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("actors", &self.actors.len())
            .finish_non_exhaustive()
    }
}

/// One actor's exposed messages, being described: from [`Export::actor`]; end it with
/// [`done`](ActorExport::done).
#[must_use = "an actor's description is added by `done()`"]
pub struct ActorExport<'a, A> {
    export: &'a mut Export,
    urn: Option<String>,
    messages: Vec<Value>,
    _actor: PhantomData<fn() -> A>,
}

impl Default for Export {
    fn default() -> Self {
        Export {
            generator: SchemaSettings::draft2020_12().into_generator(),
            actors: Vec::new(),
        }
    }
}

impl Export {
    /// An empty description.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts describing the actor `A`, served at its own URN (`#[actor(urn = "...")]`,
    /// [`Actor::URN`]; `null` in the document if it has none).
    pub fn actor<A: Actor>(&mut self) -> ActorExport<'_, A> {
        ActorExport {
            export: self,
            urn: A::URN.map(str::to_owned),
            messages: Vec::new(),
            _actor: PhantomData,
        }
    }

    /// Starts describing the actor `A`, served at `urn` (an actor spawned with
    /// `.urn(...)`, or one of several of the same type).
    pub fn actor_at<A: Actor>(&mut self, urn: impl Into<String>) -> ActorExport<'_, A> {
        ActorExport {
            export: self,
            urn: Some(urn.into()),
            messages: Vec::new(),
            _actor: PhantomData,
        }
    }

    /// The whole document, as JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut generator = self.generator.clone();
        let defs = generator.take_definitions(true);
        json!({
            "conclib_schema": FORMAT_VERSION,
            "actors": self.actors,
            "$defs": defs,
        })
    }

    /// The whole document, as pretty-printed JSON text.
    #[must_use]
    pub fn to_string_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.to_json()).expect("JSON of a JSON value")
    }
}

/// The actor's type name, without its module path.
fn short_name<A>() -> &'static str {
    let full = std::any::type_name::<A>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<A: Actor> ActorExport<'_, A> {
    /// Adds an exposed message that may fail with its `Error`.
    pub fn message<M>(mut self) -> Self
    where
        M: Message + JsonSchema,
        M::Response: JsonSchema,
        M::Error: JsonSchema,
    {
        let generator = &mut self.export.generator;
        let entry = json!({
            "name": M::name(),
            "request": generator.subschema_for::<M>(),
            "response": generator.subschema_for::<M::Response>(),
            "error": generator.subschema_for::<M::Error>(),
        });
        self.messages.push(entry);
        self
    }

    /// Adds an exposed message that cannot fail (`Error = Infallible`).
    pub fn infallible<M>(mut self) -> Self
    where
        M: Message<Error = Infallible> + JsonSchema,
        M::Response: JsonSchema,
    {
        let generator = &mut self.export.generator;
        let entry = json!({
            "name": M::name(),
            "request": generator.subschema_for::<M>(),
            "response": generator.subschema_for::<M::Response>(),
            "error": null,
        });
        self.messages.push(entry);
        self
    }

    /// Ends the actor's description and adds it to the document.
    ///
    /// # Panics
    /// If the messages described are not exactly those `A` exposes ([`Actor::REMOTE`]):
    /// the schema would lie about the actor.
    pub fn done(self) {
        let mut described: Vec<&str> = self
            .messages
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        let mut exposed: Vec<&str> = A::REMOTE.iter().map(|m| m.name()).collect();
        described.sort_unstable();
        exposed.sort_unstable();
        assert_eq!(
            described,
            exposed,
            "the schema of {} must describe exactly the messages it exposes",
            short_name::<A>()
        );
        self.export.actors.push(json!({
            "name": short_name::<A>(),
            "urn": self.urn,
            "messages": self.messages,
        }));
    }
}
