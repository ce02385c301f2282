//! The protocol's shared conformance cases (`python/conformance/*.json`, described in its
//! README), run against this crate's proxy with raw Redis commands, as a client in another
//! language speaks it. The Python client's tests run the same files against the Python test
//! server, so both sides agree on every byte of these requests and answers.
#![cfg(feature = "msgpack")]
mod common;

use std::path::{Path, PathBuf};

use common::{config, raw, raw_client, system_with, v};
use conclib_redis::{protocol::decode_reply, start_proxy};
use fred::prelude::*;
use serde_json::Value as Json;

/// The case files, sorted by name.
fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Bytes from hex digits.
fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// Lower-case hex of bytes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a case names, filled in for one run.
struct Run<'a> {
    id: u64,
    urn: &'a str,
    reply: String,
}

impl Run<'_> {
    /// A field's value: `{"hex": ..}` as bytes, a string with `$id`, `$urn`, `$reply` filled in.
    fn value(&self, json: &Json) -> Vec<u8> {
        match json {
            Json::Object(o) => unhex(o["hex"].as_str().expect("hex is a string")),
            Json::String(s) => s
                .replace("$id", &self.id.to_string())
                .replace("$urn", self.urn)
                .replace("$reply", &self.reply)
                .into_bytes(),
            other => panic!("a field value is a string or {{\"hex\": ..}}, got {other}"),
        }
    }
}

async fn run_case(redis: &Client, ns: &str, id: u64, case: &Json) -> Result<(), String> {
    let urn = case["urn"].as_str().ok_or("no urn")?;
    let run = Run {
        id,
        urn,
        reply: format!("{ns}:reply:{:032x}", 0xc0ffee_u128 << 64 | u128::from(id)),
    };
    let expect = &case["expect"];
    let urn_key = |u: &str| format!("{ns}:urn:{u}");
    if expect.get("resolve").is_some() {
        let got = raw(redis, vec![v("GET"), v(&urn_key(urn))]).await;
        return match got {
            Ok(Value::Null) => Ok(()),
            other => Err(format!("{urn} should have no key, got {other:?}")),
        };
    }
    let route = case.get("route").and_then(Json::as_str).unwrap_or(urn);
    let system = raw(redis, vec![v("GET"), v(&urn_key(route))])
        .await
        .map_err(|e| e.to_string())?;
    let system = system
        .as_str()
        .ok_or_else(|| format!("{route} has no owner: {system:?}"))?
        .into_owned();
    let mut args = vec![
        v("XADD"),
        v(&format!("{ns}:sys:{system}:req")),
        v("NOMKSTREAM"),
        v("*"),
    ];
    let mut ttl_ms = 5000.0;
    for pair in case["fields"].as_array().ok_or("no fields")? {
        let (name, value) = (&pair[0], &pair[1]);
        let value = run.value(value);
        if name == "ttl" {
            ttl_ms = String::from_utf8_lossy(&value).parse().unwrap_or(5000.0);
        }
        args.push(v(name.as_str().ok_or("a field name is a string")?));
        args.push(Value::Bytes(value.into()));
    }
    let added = raw(redis, args).await.map_err(|e| e.to_string())?;
    if added.is_null() {
        return Err("the system's stream does not exist".into());
    }
    let wait = match expect.get("no_reply_within_ms").and_then(Json::as_f64) {
        Some(ms) => ms / 1000.0,
        None => ttl_ms / 1000.0 + 5.0,
    };
    let popped = raw(
        redis,
        vec![
            v("BLMPOP"),
            v(&wait.to_string()),
            Value::Integer(1),
            v(&run.reply),
            v("LEFT"),
            v("COUNT"),
            Value::Integer(1),
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = raw(redis, vec![v("DEL"), v(&run.reply)]).await;
    if expect.get("no_reply_within_ms").is_some() {
        return match popped {
            Value::Null => Ok(()),
            other => Err(format!("expected no reply, got {other:?}")),
        };
    }
    let Value::Array(mut parts) = popped else {
        return Err(format!("no reply within {wait} s: {popped:?}"));
    };
    let Some(Value::Array(frames)) = parts.pop() else {
        return Err("malformed BLMPOP answer".into());
    };
    let frame = frames
        .first()
        .and_then(Value::as_bytes)
        .ok_or("no frame")?
        .to_vec();
    let (got_id, status, payload) = decode_reply(&frame).ok_or("short frame")?;
    if got_id != id {
        return Err(format!("reply for id {got_id}, expected {id}"));
    }
    let want = expect["status"].as_u64().ok_or("expect.status")?;
    if u64::from(status) != want {
        return Err(format!(
            "status {status}, expected {want} (payload {:?})",
            String::from_utf8_lossy(payload)
        ));
    }
    if let Some(want) = expect.get("payload_hex").and_then(Json::as_str)
        && hex(payload) != want
    {
        return Err(format!("payload {}, expected {want}", hex(payload)));
    }
    if let Some(want) = expect.get("payload_contains").and_then(Json::as_str) {
        let text = String::from_utf8_lossy(payload);
        if !text.contains(want) {
            return Err(format!("payload {text:?} does not contain {want:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases() {
    let config = config("conformance");
    let system = system_with("backend", &["conf:counter", "conf:shared"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    // Served by a group (of one here): requests go to the group's stream.
    proxy.join("conf:shared").await.unwrap();
    let redis = raw_client(&config).await;
    let files = case_files();
    assert!(files.len() >= 20, "only {} cases", files.len());
    let mut failures = Vec::new();
    for (n, path) in files.iter().enumerate() {
        let case: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = run_case(&redis, &config.namespace, n as u64 + 1, &case).await {
            failures.push(format!(
                "{}: {e}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    proxy.shutdown().await.unwrap();
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}
