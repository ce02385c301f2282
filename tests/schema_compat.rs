//! The schema compatibility check (`conclib::schema::compare`, `conclib-schema check`): each
//! breaking and each additive change, made as a service would make it (two versions of its
//! Rust types, exported by `conclib::schema::Export`).
#![cfg(feature = "schema")]

use conclib::schema::{ChangeKind, Compatibility, compare};
use serde_json::Value;

/// The first build.
mod v1 {
    use conclib::{actor, message};
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[message(response = Receipt, error = OrderError)]
    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct PlaceOrder {
        pub sku: String,
        pub quantity: u32,
        pub note: Option<String>,
        pub tags: Vec<Tag>,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Tag {
        pub name: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Receipt {
        pub id: u64,
    }

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    pub enum OrderError {
        OutOfStock,
        Limit { max: u32 },
    }

    #[message(response = u64)]
    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Count;

    #[actor(urn = "shop")]
    #[derive(Default)]
    pub struct Shop;

    #[actor]
    impl Shop {
        #[handle(remote)]
        fn place(&mut self, _: PlaceOrder) -> Result<Receipt, OrderError> {
            Ok(Receipt { id: 1 })
        }

        #[handle(remote)]
        fn count(&mut self, _: Count) -> u64 {
            0
        }
    }

    pub fn schema() -> serde_json::Value {
        let mut export = Export::new();
        export
            .actor::<Shop>()
            .message::<PlaceOrder>()
            .infallible::<Count>()
            .done();
        export.to_json()
    }

    use conclib::schema::Export;
}

/// The document of v1 with one edit: what a second build would export.
fn edited(edit: impl FnOnce(&mut Value)) -> Compatibility {
    let old = v1::schema();
    let mut new = old.clone();
    edit(&mut new);
    compare(&old, &new).expect("both are schema documents")
}

fn request(doc: &mut Value) -> &mut Value {
    let defs = &mut doc["$defs"]["PlaceOrder"];
    assert!(defs.is_object(), "schemars names PlaceOrder under $defs");
    defs
}

/// The one change found, breaking or not, at `path`.
fn only(report: &Compatibility) -> (&ChangeKind, &str) {
    assert_eq!(report.changes.len(), 1, "one change: {report}");
    (&report.changes[0].kind, report.changes[0].path.as_str())
}

#[test]
fn the_same_build_has_no_change() {
    let report = compare(&v1::schema(), &v1::schema()).unwrap();
    assert!(report.changes.is_empty(), "{report}");
    assert!(report.is_compatible());
}

#[test]
fn an_optional_field_added_or_removed_is_additive() {
    let added = edited(|doc| {
        request(doc)["properties"]["gift"] = serde_json::json!({"type": ["boolean", "null"]});
    });
    assert_eq!(
        only(&added),
        (&ChangeKind::Additive, "shop/PlaceOrder/request.gift")
    );
    assert!(added.is_compatible());

    let removed = edited(|doc| {
        request(doc)["properties"]
            .as_object_mut()
            .unwrap()
            .remove("note");
    });
    assert_eq!(
        only(&removed),
        (&ChangeKind::Additive, "shop/PlaceOrder/request.note")
    );
}

#[test]
fn a_new_message_or_actor_is_additive() {
    let report = edited(|doc| {
        let messages = doc["actors"][0]["messages"].as_array_mut().unwrap();
        let mut new = messages[1].clone();
        new["name"] = "Refund".into();
        messages.push(new);
        let mut actor = doc["actors"][0].clone();
        actor["urn"] = "warehouse".into();
        doc["actors"].as_array_mut().unwrap().push(actor);
    });
    assert!(report.is_compatible(), "{report}");
    let paths: Vec<&str> = report.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["shop/Refund", "warehouse"]);
}

#[test]
fn a_removed_or_renamed_message_is_breaking() {
    let report = edited(|doc| {
        doc["actors"][0]["messages"][1]["name"] = "Total".into();
    });
    assert!(!report.is_compatible());
    let breaking: Vec<&str> = report.breaking().map(|c| c.path.as_str()).collect();
    assert_eq!(breaking, ["shop/Count"], "{report}");

    let gone = edited(|doc| {
        doc["actors"].as_array_mut().unwrap().clear();
    });
    assert_eq!(only(&gone), (&ChangeKind::Breaking, "shop"));
}

#[test]
fn required_fields_added_or_removed_are_breaking() {
    let added = edited(|doc| {
        let req = request(doc);
        req["properties"]["priority"] = serde_json::json!({"type": "integer", "format": "uint8"});
        req["required"]
            .as_array_mut()
            .unwrap()
            .push("priority".into());
    });
    assert_eq!(
        only(&added),
        (&ChangeKind::Breaking, "shop/PlaceOrder/request.priority")
    );

    let removed = edited(|doc| {
        let req = request(doc);
        req["properties"]
            .as_object_mut()
            .unwrap()
            .remove("quantity");
        req["required"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f != "quantity");
    });
    assert_eq!(
        only(&removed),
        (&ChangeKind::Breaking, "shop/PlaceOrder/request.quantity")
    );
}

#[test]
fn a_changed_type_or_format_is_breaking() {
    let retyped = edited(|doc| {
        request(doc)["properties"]["sku"] = serde_json::json!({"type": "integer"});
    });
    assert_eq!(
        only(&retyped),
        (&ChangeKind::Breaking, "shop/PlaceOrder/request.sku")
    );

    let widened = edited(|doc| {
        request(doc)["properties"]["quantity"]["format"] = "uint64".into();
    });
    assert_eq!(
        only(&widened),
        (&ChangeKind::Breaking, "shop/PlaceOrder/request.quantity")
    );

    // Deep: a field of an array's items.
    let deep = edited(|doc| {
        doc["$defs"]["Tag"]["properties"]["name"] = serde_json::json!({"type": "boolean"});
    });
    assert_eq!(
        only(&deep),
        (&ChangeKind::Breaking, "shop/PlaceOrder/request.tags[].name")
    );

    // The response.
    let response = edited(|doc| {
        doc["$defs"]["Receipt"]["properties"]["id"] = serde_json::json!({"type": "string"});
    });
    assert_eq!(
        only(&response),
        (&ChangeKind::Breaking, "shop/PlaceOrder/response.id")
    );
}

#[test]
fn option_made_required_or_optional_is_breaking() {
    let required = edited(|doc| {
        let req = request(doc);
        req["properties"]["note"] = serde_json::json!({"type": "string"});
        req["required"].as_array_mut().unwrap().push("note".into());
    });
    assert!(!required.is_compatible(), "{required}");
    assert!(
        required
            .breaking()
            .all(|c| c.path == "shop/PlaceOrder/request.note")
    );
}

#[test]
fn enum_variants_added_or_removed_are_breaking() {
    // The error enum as schemars describes it (a unit variant and one with data).
    let error = &v1::schema()["$defs"]["OrderError"];
    assert!(error.get("oneOf").is_some(), "{error}");

    let unit_added = edited(|doc| {
        let alternatives = doc["$defs"]["OrderError"]["oneOf"].as_array_mut().unwrap();
        for alternative in alternatives.iter_mut() {
            if let Some(list) = alternative.get_mut("enum").and_then(Value::as_array_mut) {
                list.push("Closed".into());
            } else if alternative.get("const").is_some() {
                *alternative =
                    serde_json::json!({"type": "string", "enum": ["OutOfStock", "Closed"]});
            }
        }
    });
    assert_eq!(
        only(&unit_added),
        (&ChangeKind::Breaking, "shop/PlaceOrder/error")
    );
    assert!(
        unit_added.changes[0].what.contains("Closed"),
        "{unit_added}"
    );

    let data_removed = edited(|doc| {
        let alternatives = doc["$defs"]["OrderError"]["oneOf"].as_array_mut().unwrap();
        alternatives.retain(|a| a.get("properties").is_none());
    });
    assert_eq!(
        only(&data_removed),
        (&ChangeKind::Breaking, "shop/PlaceOrder/error|Limit")
    );

    let data_changed = edited(|doc| {
        for alternative in doc["$defs"]["OrderError"]["oneOf"].as_array_mut().unwrap() {
            if let Some(limit) = alternative.pointer_mut("/properties/Limit/properties/max") {
                *limit = serde_json::json!({"type": "string"});
            }
        }
    });
    assert_eq!(
        only(&data_changed),
        (
            &ChangeKind::Breaking,
            "shop/PlaceOrder/error|Limit.Limit.max"
        )
    );
}

#[test]
fn a_message_that_may_now_fail_is_breaking() {
    let report = edited(|doc| {
        doc["actors"][0]["messages"][1]["error"] = serde_json::json!({"type": "string"});
    });
    assert_eq!(only(&report), (&ChangeKind::Breaking, "shop/Count/error"));
}

#[test]
fn documents_of_another_format_are_refused() {
    let mut other = v1::schema();
    other["conclib_schema"] = 99.into();
    assert!(compare(&v1::schema(), &other).is_err());
    assert!(compare(&serde_json::json!({}), &v1::schema()).is_err());
    assert!(compare(&serde_json::json!([1, 2]), &v1::schema()).is_err());
}

/// The command: exit 0 compatible, 1 breaking, 2 unreadable.
#[test]
fn the_command_fails_on_breaking_changes_only() {
    let dir = std::env::temp_dir().join(format!("conclib-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, doc: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, doc.to_string()).unwrap();
        path
    };
    let old = write("old.json", &v1::schema());
    let mut additive = v1::schema();
    additive["$defs"]["PlaceOrder"]["properties"]["gift"] =
        serde_json::json!({"type": ["boolean", "null"]});
    let additive = write("additive.json", &additive);
    let mut breaking = v1::schema();
    breaking["$defs"]["PlaceOrder"]["properties"]["sku"] = serde_json::json!({"type": "integer"});
    let breaking = write("breaking.json", &breaking);
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();

    let run = |new: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_conclib-schema"))
            .arg("check")
            .arg(&old)
            .arg(new)
            .output()
            .unwrap()
    };
    let ok = run(&additive);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("additive  shop/PlaceOrder/request.gift"));
    let bad = run(&breaking);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("breaking  shop/PlaceOrder/request.sku"));
    assert_eq!(run(&garbage).status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
