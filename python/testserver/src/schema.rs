//! What each actor exposes, as JSON for the Python stub generator (`python -m
//! conclib.stubgen`): per actor its type name, URN and exposed messages, per message its wire
//! name and the JSON Schemas (draft 2020-12, from `schemars`) of the message, its response
//! and its error; named types once, under `$defs`.
//!
//! ```json
//! {"conclib_schema": 1,
//!  "actors": [{"name": "Counter", "urn": "py:counter", "messages": [
//!     {"name": "Add", "request": {"$ref": "#/$defs/Add"}, "response": {"type": "integer", ...},
//!      "error": {"type": "string"}}]}],
//!  "$defs": {"Add": {"type": "object", "properties": {"n": ...}, "required": ["n"]}}}
//! ```
//!
//! `error` is `null` for a message that cannot fail. Bytes sent as MessagePack `bin` are
//! `{"type": "string", "x-conclib-bin": true}`.

use std::convert::Infallible;

use conclib::{Actor, Message};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

/// Collects the actors' declarations, sharing one set of definitions.
pub struct Export {
    generator: SchemaGenerator,
    actors: Vec<Value>,
}

/// One actor's exposed messages, being described.
pub struct ActorExport<'a, A> {
    export: &'a mut Export,
    urn: &'static str,
    messages: Vec<Value>,
    _actor: std::marker::PhantomData<fn() -> A>,
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
    /// Starts describing the actor `A`, served at `urn`.
    pub fn actor<A: Actor>(&mut self, urn: &'static str) -> ActorExport<'_, A> {
        ActorExport {
            export: self,
            urn,
            messages: Vec::new(),
            _actor: std::marker::PhantomData,
        }
    }

    /// The whole document.
    pub fn finish(mut self) -> Value {
        let defs = self.generator.take_definitions(true);
        json!({
            "conclib_schema": 1,
            "actors": self.actors,
            "$defs": defs,
        })
    }
}

/// The actor's type name, without its module path.
fn short_name<A>() -> &'static str {
    let full = std::any::type_name::<A>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<A: Actor> ActorExport<'_, A> {
    /// Adds a message that may fail with its `Error`.
    #[must_use]
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

    /// Adds a message that cannot fail.
    #[must_use]
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

    /// Ends the actor's description.
    ///
    /// # Panics
    /// If the messages described are not exactly those `A` exposes (`A::REMOTE`): the
    /// schema would lie about the actor.
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
