//! The demo's last scene: one pattern, `acct:{id}`, served by Rust members and a Python
//! member side by side; FastAPI workers under uvicorn asking them; the Python member
//! SIGKILLed mid-load and its URNs answered by the Rust members, each account's count kept
//! in the fenced state store (so it survives the move).
//!
//! The Rust member is [`member`] (the demo binary run as `demo member`); the Python member,
//! the FastAPI app and the scene's driver are `python/examples/demo_member.py`,
//! `demo_app.py` and `demo_scene.py`, which [`scene`] runs with the Python of
//! `target/python-venv` (made by `cargo xtask demo`) or of `CONCLIB_PYTHON`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use conclib::redis::scale::{Activation, StateStore};
use conclib::redis::{ProxyConfig, codec::MsgPack, start_proxy};
use conclib::remote::ExposedMessage;
use conclib::{Actor, ActorSystem, Context, Message, RequestEnvelope};
use serde::{Deserialize, Serialize};

use crate::BoxError;

/// The pattern both kinds of member serve.
pub const PATTERN: &str = "acct:{id}";

/// Adds one to an account (saved before it is answered); answers the new count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incr;

impl Message for Incr {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "demo.Incr"
    }
}

impl conclib::remote::MessageDecl for Incr {
    type WireError = String;
}

/// An account's count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance;

impl Message for Balance {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "demo.Balance"
    }
}

impl conclib::remote::MessageDecl for Balance {
    type WireError = String;
}

/// An account: a count in the activation's store (a MessagePack integer, as the Python
/// member's `Account` saves it).
pub struct Account {
    count: u64,
    store: StateStore,
}

impl Account {
    /// The activation of `a`, its count loaded from the store.
    ///
    /// # Errors
    /// The store's error, as text.
    pub async fn activate(a: Activation) -> Result<Account, String> {
        let count = a.store().load::<u64>().await.map_err(|e| e.to_string())?;
        Ok(Account {
            count: count.unwrap_or(0),
            store: a.into_store(),
        })
    }
}

impl Actor for Account {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Incr>(),
        ExposedMessage::of::<Balance>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Incr>() {
            Ok((Incr, r)) => {
                let next = self.count + 1;
                let saved = self.store.save(&next).await.map_err(|e| e.to_string());
                if saved.is_ok() {
                    self.count = next;
                }
                return r.respond(saved.map(|()| next));
            }
            Err(req) => req,
        };
        match req.extract::<Balance>() {
            Ok((Balance, r)) => r.respond(Ok(self.count)),
            Err(req) => req.reject(),
        }
    }
}

/// `demo member --redis URL --namespace NS --system ID`: a Rust member of `acct:{id}`
/// (MessagePack, the Python callers' codec); prints `READY`, serves until its standard
/// input ends.
pub async fn member(args: impl Iterator<Item = String>) -> ExitCode {
    let (mut redis, mut namespace, mut system) = (String::new(), String::new(), String::new());
    let mut args = args;
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--redis" => redis = value,
            "--namespace" => namespace = value,
            "--system" => system = value,
            other => {
                eprintln!("demo member: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    match serve(&redis, &namespace, &system).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo member {system}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(redis: &str, namespace: &str, system_id: &str) -> Result<(), BoxError> {
    let mut config = ProxyConfig::new(redis)
        .with_namespace(namespace)
        .with_system_id(system_id)
        .with_codec(MsgPack);
    config.release_on_shutdown = true;
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await?;
    proxy.activate(PATTERN, Account::activate).await?;
    println!("READY");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let _ = stdin_closed.await;
    proxy.shutdown().await?;
    system.shutdown(std::time::Duration::from_secs(5)).await?;
    Ok(())
}

/// The Python that runs the scene: `CONCLIB_PYTHON`, else `target/python-venv`'s.
fn python(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONCLIB_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let venv = target.join("python-venv").join("bin").join("python");
    venv.is_file().then_some(venv)
}

/// Runs the scene on the Redis at `redis_url` (namespace `mixed`), its lines printed as they
/// come; `Ok(false)` if it failed or lost an increment. Skipped (`Ok(true)`, said in one
/// line) without a Python with the package installed.
///
/// # Errors
/// When the scene's driver cannot be started.
pub fn scene(redis_url: &str, program: &Path) -> Result<bool, BoxError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?;
    let Some(python) = python(root) else {
        println!("  skipped: no Python environment (`cargo xtask demo` makes target/python-venv)");
        return Ok(true);
    };
    let script = root.join("python").join("examples").join("demo_scene.py");
    let mut child = Command::new(python)
        .arg(script)
        .args([
            "--redis",
            redis_url,
            "--namespace",
            "mixed",
            "--rust-member",
        ])
        .arg(program)
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut passed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        println!("{line}");
        if let Some(result) = line.strip_prefix("RESULT ") {
            let value = |key: &str| {
                result
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            passed =
                value("lost").as_deref() == Some("0") && value("splits").as_deref() == Some("0");
        }
    }
    let status = child.wait()?;
    Ok(passed && status.success())
}
