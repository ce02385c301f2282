//! Whether two builds of a service can serve side by side: the changes between two schema
//! documents ([`Export`](super::Export) of each build), each breaking or additive.
//!
//! During a rolling upgrade every pairing happens: a caller of the old build asks a member of
//! the new one, and a caller of the new build asks a member of the old one. So a change is
//! additive only when values of either build decode in the other; everything else is
//! breaking. With serde's defaults (unknown fields ignored, a missing `Option` field read as
//! `None`) that gives:
//!
//! | change | kind |
//! |---|---|
//! | an actor or a message added | additive |
//! | an optional field added or removed | additive |
//! | an actor or a message removed (a rename is a removal) | breaking |
//! | a required field added or removed | breaking |
//! | a field made required or optional (`T` ↔ `Option<T>`) | breaking |
//! | a type or number format changed | breaking |
//! | an enum variant added or removed | breaking: the other build cannot decode it |
//! | a message that could not fail may now fail, or the reverse | breaking |
//! | a field removed from a type that refuses unknown fields (`deny_unknown_fields`) | breaking |
//!
//! Descriptions and titles are not compared. Types are compared by structure, not by name:
//! renaming a Rust type changes nothing on the wire.
//!
//! ```
//! use conclib::schema::{ChangeKind, compare};
//! use serde_json::json;
//!
//! let v1 = json!({"conclib_schema": 1, "$defs": {}, "actors": [{"name": "Counter", "urn": "counter",
//!     "messages": [{"name": "Add", "error": null, "response": {"type": "integer"},
//!                   "request": {"type": "object", "properties": {"n": {"type": "integer"}},
//!                               "required": ["n"]}}]}]});
//! let mut v2 = v1.clone();
//! // An optional field: additive.
//! v2["actors"][0]["messages"][0]["request"]["properties"]["note"] = json!({"type": ["string", "null"]});
//! let report = compare(&v1, &v2).unwrap();
//! assert!(report.is_compatible());
//! assert_eq!(report.changes[0].kind, ChangeKind::Additive);
//! // The required field's type changed: breaking.
//! v2["actors"][0]["messages"][0]["request"]["properties"]["n"] = json!({"type": "string"});
//! let report = compare(&v1, &v2).unwrap();
//! assert!(!report.is_compatible());
//! assert_eq!(report.breaking().next().unwrap().path, "counter/Add/request.n");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

/// The version of the document's format (its `conclib_schema` field): what
/// [`Export`](super::Export) writes and [`compare`] reads.
pub const FORMAT_VERSION: u64 = 1;

static NULL: Value = Value::Null;
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// Whether a [`Change`] lets the two builds serve side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Values of either build decode in the other.
    Additive,
    /// Some value of one build does not decode in the other, or a caller of one build asks
    /// what the other does not serve.
    Breaking,
}

/// One difference between two schema documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Breaking or additive.
    pub kind: ChangeKind,
    /// Where: `urn/Message/request.field[].inner` (the actor's URN, or its type name when it
    /// has none; `request`, `response` or `error`; fields, `[]` for an array's items,
    /// `{}` for a map's values, `|Variant` for an enum's variant).
    pub path: String,
    /// What changed, in words.
    pub what: String,
}

/// Every change from one schema document to another, from [`compare`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compatibility {
    /// The changes, breaking and additive, in the documents' order.
    pub changes: Vec<Change>,
}

impl Compatibility {
    /// No change is breaking: the two builds may serve side by side.
    #[must_use]
    pub fn is_compatible(&self) -> bool {
        self.breaking().next().is_none()
    }

    /// The breaking changes.
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Breaking)
    }
}

impl fmt::Display for Compatibility {
    /// One line a change: `breaking  path: what` or `additive  path: what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            let kind = match change.kind {
                ChangeKind::Breaking => "breaking",
                ChangeKind::Additive => "additive",
            };
            writeln!(f, "{kind}  {}: {}", change.path, change.what)?;
        }
        Ok(())
    }
}

/// A document that is not a schema document [`Export`](super::Export) writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDocumentError(pub String);

impl fmt::Display for SchemaDocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a conclib schema document: {}", self.0)
    }
}

impl std::error::Error for SchemaDocumentError {}

/// The changes from the `old` build's schema document to the `new` one's.
///
/// # Errors
/// [`SchemaDocumentError`] if either is not a document of this format
/// ([`FORMAT_VERSION`]): no `actors` list, an actor or message without a name.
pub fn compare(old: &Value, new: &Value) -> Result<Compatibility, SchemaDocumentError> {
    let old_doc = Document::read(old, "old")?;
    let new_doc = Document::read(new, "new")?;
    let mut walk = Walk {
        old_defs: old_doc.defs,
        new_defs: new_doc.defs,
        visiting: HashSet::new(),
        changes: Vec::new(),
    };
    for (key, old_actor) in &old_doc.actors {
        match new_doc.actors.get(key) {
            None => walk.push(ChangeKind::Breaking, key, "actor removed"),
            Some(new_actor) => walk.actor(key, old_actor, new_actor),
        }
    }
    for key in new_doc.actors.keys() {
        if !old_doc.actors.contains_key(key) {
            walk.push(ChangeKind::Additive, key, "actor added");
        }
    }
    Ok(Compatibility {
        changes: walk.changes,
    })
}

/// A document's actors by key (URN, or type name without one) and its shared definitions.
struct Document<'a> {
    actors: BTreeMap<String, Actor<'a>>,
    defs: Option<&'a Map<String, Value>>,
}

/// An actor's messages by name.
struct Actor<'a> {
    messages: BTreeMap<&'a str, &'a Value>,
}

impl<'a> Document<'a> {
    fn read(doc: &'a Value, which: &str) -> Result<Self, SchemaDocumentError> {
        let bad = |what: &str| SchemaDocumentError(format!("the {which} document: {what}"));
        match doc.get("conclib_schema").and_then(Value::as_u64) {
            Some(FORMAT_VERSION) => {}
            Some(other) => return Err(bad(&format!("format {other}, not {FORMAT_VERSION}"))),
            None => return Err(bad("no conclib_schema version")),
        }
        let list = doc
            .get("actors")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no actors list"))?;
        let mut actors = BTreeMap::new();
        for actor in list {
            let key = match (actor.get("urn").and_then(Value::as_str), actor.get("name")) {
                (Some(urn), _) => urn.to_owned(),
                (None, Some(Value::String(name))) => name.clone(),
                _ => return Err(bad("an actor with neither URN nor name")),
            };
            let mut messages = BTreeMap::new();
            for message in actor
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&format!("{key}: no messages list")))?
            {
                let name = message
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&format!("{key}: a message without a name")))?;
                messages.insert(name, message);
            }
            actors.insert(key, Actor { messages });
        }
        Ok(Document {
            actors,
            defs: doc.get("$defs").and_then(Value::as_object),
        })
    }
}

/// The comparison under way: both documents' definitions and the changes found.
struct Walk<'a> {
    old_defs: Option<&'a Map<String, Value>>,
    new_defs: Option<&'a Map<String, Value>>,
    /// Pairs of definitions being compared (recursive types end here).
    visiting: HashSet<(String, String)>,
    changes: Vec<Change>,
}

impl<'a> Walk<'a> {
    fn push(&mut self, kind: ChangeKind, path: &str, what: impl Into<String>) {
        self.changes.push(Change {
            kind,
            path: path.to_owned(),
            what: what.into(),
        });
    }

    fn actor(&mut self, key: &str, old: &Actor<'a>, new: &Actor<'a>) {
        for (name, old_message) in &old.messages {
            let path = format!("{key}/{name}");
            match new.messages.get(name) {
                None => self.push(
                    ChangeKind::Breaking,
                    &path,
                    "message removed (callers of the old build still send it)",
                ),
                Some(new_message) => {
                    for part in ["request", "response"] {
                        let old_part = old_message.get(part).unwrap_or(&NULL);
                        let new_part = new_message.get(part).unwrap_or(&NULL);
                        self.schema(&format!("{path}/{part}"), old_part, new_part);
                    }
                    self.error(&path, old_message, new_message);
                }
            }
        }
        for name in new.messages.keys() {
            if !old.messages.contains_key(name) {
                self.push(
                    ChangeKind::Additive,
                    &format!("{key}/{name}"),
                    "message added",
                );
            }
        }
    }

    /// A message's error: `null` when it cannot fail.
    fn error(&mut self, path: &str, old: &'a Value, new: &'a Value) {
        let path = format!("{path}/error");
        match (
            old.get("error").filter(|e| !e.is_null()),
            new.get("error").filter(|e| !e.is_null()),
        ) {
            (None, None) => {}
            (Some(old), Some(new)) => self.schema(&path, old, new),
            (None, Some(_)) => self.push(
                ChangeKind::Breaking,
                &path,
                "the message may now fail (callers of the old build cannot read its error)",
            ),
            (Some(_), None) => self.push(
                ChangeKind::Breaking,
                &path,
                "the message can no longer fail (callers of the new build cannot read the old build's errors)",
            ),
        }
    }

    /// Follows `$ref`s to the definition; the definition's name, if one was followed.
    fn resolve(&self, schema: &'a Value, defs: Option<&'a Map<String, Value>>) -> Target<'a> {
        let mut schema = schema;
        let mut name = None;
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let def = reference.strip_prefix("#/$defs/").unwrap_or(reference);
            match defs.and_then(|d| d.get(def)) {
                Some(found) => {
                    name = Some(def);
                    schema = found;
                }
                None => break,
            }
        }
        Target { schema, name }
    }

    fn schema(&mut self, path: &str, old: &'a Value, new: &'a Value) {
        let old = self.resolve(old, self.old_defs);
        let new = self.resolve(new, self.new_defs);
        if let (Some(a), Some(b)) = (old.name, new.name) {
            // A recursive type compares its definitions once.
            if !self.visiting.insert((a.to_owned(), b.to_owned())) {
                return;
            }
            self.shape(path, old.schema, new.schema);
            self.visiting.remove(&(a.to_owned(), b.to_owned()));
        } else {
            self.shape(path, old.schema, new.schema);
        }
    }

    fn shape(&mut self, path: &str, old: &'a Value, new: &'a Value) {
        let (Value::Object(o), Value::Object(n)) = (old, new) else {
            if old != new {
                self.push(
                    ChangeKind::Breaking,
                    path,
                    format!("schema {old} became {new}"),
                );
            }
            return;
        };
        let (old_types, new_types) = (types(o), types(n));
        if old_types != new_types {
            let what = match (&old_types, &new_types) {
                (Some(a), Some(b)) if with_null(a) == *b => {
                    "made optional (T became Option<T>)".to_owned()
                }
                (Some(a), Some(b)) if with_null(b) == *a => {
                    "made required (Option<T> became T)".to_owned()
                }
                _ => format!(
                    "type {} became {}",
                    describe(&old_types),
                    describe(&new_types)
                ),
            };
            self.push(ChangeKind::Breaking, path, what);
            return;
        }
        for key in ["format", "const"] {
            if o.get(key) != n.get(key) {
                self.push(
                    ChangeKind::Breaking,
                    path,
                    format!("{key} {} became {}", show(o.get(key)), show(n.get(key))),
                );
            }
        }
        self.values(path, o, n);
        self.fields(path, o, n);
        self.items(path, o, n);
        self.alternatives(path, o, n);
    }

    /// Unit variants and other listed values (`enum`).
    fn values(&mut self, path: &str, o: &Map<String, Value>, n: &Map<String, Value>) {
        let (old, new) = (enum_values(o), enum_values(n));
        for value in old.difference(&new) {
            self.push(ChangeKind::Breaking, path, format!("value {value} removed"));
        }
        for value in new.difference(&old) {
            self.push(
                ChangeKind::Breaking,
                path,
                format!("value {value} added (the old build cannot decode it)"),
            );
        }
    }

    /// An object's fields, and a map's values (`additionalProperties`).
    fn fields(&mut self, path: &str, o: &'a Map<String, Value>, n: &'a Map<String, Value>) {
        let old_props = o
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let new_props = n
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY);
        let (old_required, new_required) = (required(o), required(n));
        let closed =
            |m: &Map<String, Value>| m.get("additionalProperties") == Some(&Value::Bool(false));
        for (name, old_field) in old_props {
            let field = format!("{path}.{name}");
            match new_props.get(name) {
                Some(new_field) => {
                    match (
                        old_required.contains(name.as_str()),
                        new_required.contains(name.as_str()),
                    ) {
                        (false, true) => {
                            self.push(ChangeKind::Breaking, &field, "field made required")
                        }
                        (true, false) => self.push(
                            ChangeKind::Breaking,
                            &field,
                            "field made optional (the old build requires it)",
                        ),
                        _ => {}
                    }
                    self.schema(&field, old_field, new_field);
                }
                None if old_required.contains(name.as_str()) => self.push(
                    ChangeKind::Breaking,
                    &field,
                    "required field removed (the old build requires it)",
                ),
                None if closed(n) => self.push(
                    ChangeKind::Breaking,
                    &field,
                    "field removed from a type that refuses unknown fields",
                ),
                None => self.push(ChangeKind::Additive, &field, "optional field removed"),
            }
        }
        for name in new_props.keys().filter(|k| !old_props.contains_key(*k)) {
            let field = format!("{path}.{name}");
            if new_required.contains(name.as_str()) {
                self.push(
                    ChangeKind::Breaking,
                    &field,
                    "required field added (the old build does not send it)",
                );
            } else if closed(o) {
                self.push(
                    ChangeKind::Breaking,
                    &field,
                    "field added to a type the old build closes to unknown fields",
                );
            } else {
                self.push(ChangeKind::Additive, &field, "optional field added");
            }
        }
        if let (Some(a @ Value::Object(_)), Some(b @ Value::Object(_))) =
            (o.get("additionalProperties"), n.get("additionalProperties"))
        {
            self.schema(&format!("{path}{{}}"), a, b);
        }
    }

    /// An array's items, a tuple's elements.
    fn items(&mut self, path: &str, o: &'a Map<String, Value>, n: &'a Map<String, Value>) {
        if let (Some(a), Some(b)) = (o.get("items"), n.get("items")) {
            self.schema(&format!("{path}[]"), a, b);
        }
        let tuple = |m: &'a Map<String, Value>| {
            m.get("prefixItems")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
        };
        let (old_tuple, new_tuple) = (tuple(o), tuple(n));
        if old_tuple.len() != new_tuple.len() {
            self.push(
                ChangeKind::Breaking,
                path,
                format!(
                    "tuple of {} became tuple of {}",
                    old_tuple.len(),
                    new_tuple.len()
                ),
            );
        }
        for (i, (a, b)) in old_tuple.iter().zip(new_tuple).enumerate() {
            self.schema(&format!("{path}.{i}"), a, b);
        }
    }

    /// An enum's variants with data, and `Option<Struct>` (`oneOf`/`anyOf`), matched by tag.
    fn alternatives(&mut self, path: &str, o: &'a Map<String, Value>, n: &'a Map<String, Value>) {
        let old = self.variants(o, self.old_defs);
        let new = self.variants(n, self.new_defs);
        for (tag, old_variant) in &old {
            let at = format!("{path}|{tag}");
            match new.get(tag) {
                Some(new_variant) => self.schema(&at, old_variant, new_variant),
                None => self.push(ChangeKind::Breaking, &at, "variant removed"),
            }
        }
        for tag in new.keys().filter(|t| !old.contains_key(*t)) {
            self.push(
                ChangeKind::Breaking,
                &format!("{path}|{tag}"),
                "variant added (the old build cannot decode it)",
            );
        }
    }

    fn variants(
        &self,
        schema: &'a Map<String, Value>,
        defs: Option<&'a Map<String, Value>>,
    ) -> BTreeMap<String, &'a Value> {
        let mut variants = BTreeMap::new();
        let alternatives = ["oneOf", "anyOf"]
            .iter()
            .filter_map(|k| schema.get(*k).and_then(Value::as_array))
            .flatten();
        for (i, alternative) in alternatives.enumerate() {
            let target = self.resolve(alternative, defs);
            let Some(variant) = target.schema.as_object() else {
                variants.insert(format!("#{i}"), alternative);
                continue;
            };
            // Unit variants are compared as values (`enum`), with the schema's own.
            if variant.contains_key("enum")
                || variant.get("type") == Some(&Value::from("string"))
                    && variant.contains_key("const")
            {
                continue;
            }
            variants.insert(
                variant_tag(variant, target.name).unwrap_or_else(|| format!("#{i}")),
                alternative,
            );
        }
        variants
    }
}

/// A schema after its `$ref`s, and the name of the definition it is.
struct Target<'a> {
    schema: &'a Value,
    name: Option<&'a str>,
}

/// How a variant is told apart: its external tag (the one required property of an object
/// closed to others), its internal tag (a property with a `const`), `null`, or the
/// definition it is.
fn variant_tag(variant: &Map<String, Value>, def: Option<&str>) -> Option<String> {
    if variant.get("type") == Some(&Value::from("null")) {
        return Some("null".to_owned());
    }
    let props = variant.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        for (name, prop) in props {
            if let Some(Value::String(tag)) = prop.get("const") {
                return Some(format!("{name}={tag}"));
            }
        }
        let required = required(variant);
        if props.len() == 1 && required.len() == 1 {
            return required.into_iter().next().map(str::to_owned);
        }
    }
    def.map(str::to_owned)
}

/// A schema's `type`, as a set (`"integer"` or `["integer", "null"]`).
fn types(schema: &Map<String, Value>) -> Option<BTreeSet<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.as_str()])),
        Value::Array(list) => Some(list.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn with_null<'t>(types: &BTreeSet<&'t str>) -> BTreeSet<&'t str> {
    let mut types = types.clone();
    types.insert("null");
    types
}

fn describe(types: &Option<BTreeSet<&str>>) -> String {
    match types {
        None => "(none)".to_owned(),
        Some(set) => set.iter().copied().collect::<Vec<_>>().join("|"),
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(none)".to_owned(), Value::to_string)
}

fn required(schema: &Map<String, Value>) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The values of `enum`, and of the `const` unit variants among `oneOf`/`anyOf`.
fn enum_values(schema: &Map<String, Value>) -> BTreeSet<String> {
    let mut values: BTreeSet<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    for alternative in ["oneOf", "anyOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
    {
        if let Some(list) = alternative.get("enum").and_then(Value::as_array) {
            values.extend(list.iter().map(Value::to_string));
        } else if alternative.get("type") == Some(&Value::from("string"))
            && let Some(value) = alternative.get("const")
        {
            values.insert(value.to_string());
        }
    }
    values
}
