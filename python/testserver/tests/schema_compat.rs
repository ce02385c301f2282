//! The compatibility check over a real service's schema: this server's, as
//! `conclib-pyserver --export-schema` prints it (every message shape the Python stubs cover).

use conclib::schema::{ChangeKind, compare};
use serde_json::Value;

fn exported() -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conclib-pyserver"))
        .arg("--export-schema")
        .output()
        .expect("run conclib-pyserver --export-schema");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

#[test]
fn the_servers_schema_against_itself_and_an_edited_build() {
    let old = exported();
    let same = compare(&old, &exported()).expect("a schema document");
    assert!(same.changes.is_empty(), "{same}");

    // Every definition gains an optional field, and one message goes: additive changes by
    // the dozen, one breaking change.
    let mut new = old.clone();
    let defs = new["$defs"].as_object_mut().expect("$defs");
    let mut objects = 0;
    for def in defs.values_mut() {
        if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "since_v2".into(),
                serde_json::json!({"type": ["string", "null"]}),
            );
            objects += 1;
        }
    }
    assert!(objects > 5, "the server has object types: {objects}");
    let removed = new["actors"][0]["messages"]
        .as_array_mut()
        .expect("messages")
        .pop()
        .expect("a message");
    let report = compare(&old, &new).expect("a schema document");
    let additive = report
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Additive)
        .count();
    assert!(additive >= objects, "{report}");
    let breaking: Vec<_> = report.breaking().collect();
    assert_eq!(breaking.len(), 1, "{report}");
    assert!(
        breaking[0]
            .path
            .ends_with(removed["name"].as_str().unwrap()),
        "{report}"
    );
}
