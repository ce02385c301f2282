//! The workflow actor of these tests (`wf:{id}`): each message runs one durable execution
//! whose steps note their side effect, one line each, in a notes file shared by every
//! process, and may hold inside a side effect (so that the test can kill or freeze the
//! process between the side effect and its record).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::durable::{Begun, DurableError, Journal};
use conclib_redis::start_proxy;
use serde::{Deserialize, Serialize};

use crate::peers::{peer_config, wait_for_orders};

/// One execution to run.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Flow {
    /// The idempotency key.
    pub(crate) key: String,
    /// The steps' names, in order (`sleep:<ms>`: a durable sleep; `promise:<name>`: a
    /// promise's value, awaited up to a minute).
    pub(crate) steps: Vec<String>,
    /// A version point first, with the versions the code supports.
    pub(crate) version: Option<(u32, u32)>,
    /// Whether the result is recorded at the end (else the execution stays unfinished).
    pub(crate) finish: bool,
}

impl Flow {
    pub(crate) fn steps(key: &str, n: u32) -> Flow {
        Flow {
            key: key.to_owned(),
            steps: (1..=n).map(|i| format!("s{i}")).collect(),
            version: None,
            finish: true,
        }
    }
}

wire_message! {
    /// Runs a flow: the values of its steps (`<step>@<pid of the process that ran it>`),
    /// or the error (`FENCED`, `UNSUPPORTED <recorded>`, `NONDETERMINISM <position>`, other).
    RunFlow(Flow), "durable.RunFlow", Vec<String>
}

/// Where steps note their side effects, and where one holds.
#[derive(Clone, Default)]
pub(crate) struct Env {
    pub(crate) notes: Option<Arc<std::sync::Mutex<std::fs::File>>>,
    /// The step whose side effect holds (after noting), and for how long.
    pub(crate) hold: Option<(String, Duration)>,
}

impl Env {
    fn note(&self, line: &str) {
        if let Some(notes) = &self.notes {
            use std::io::Write;
            let mut f = notes.lock().unwrap();
            let _ = writeln!(f, "{line}");
        }
    }
}

pub(crate) struct Workflows {
    journal: Journal,
    env: Env,
}

impl Workflows {
    pub(crate) fn new(journal: Journal, env: Env) -> Self {
        Workflows { journal, env }
    }

    async fn run(&mut self, flow: Flow) -> Result<Vec<String>, String> {
        let env = self.env.clone();
        let show = |e: DurableError| match e {
            DurableError::Fenced => {
                env.note(&format!("FENCED {} {}", flow.key, std::process::id()));
                "FENCED".to_owned()
            }
            DurableError::UnsupportedVersion { recorded, .. } => format!("UNSUPPORTED {recorded}"),
            DurableError::Nondeterminism { position, .. } => format!("NONDETERMINISM {position}"),
            other => other.to_string(),
        };
        let mut ex = match self.journal.begin::<Vec<String>>(&flow.key).await {
            Ok(Begun::Finished(result)) => return Ok(result),
            Ok(Begun::Running(ex)) => ex,
            Err(e) => return Err(show(e)),
        };
        let mut out = Vec::new();
        if let Some((low, high)) = flow.version {
            let v = ex.version("v", low..=high).await.map_err(&show)?;
            out.push(format!("v{v}"));
        }
        for name in &flow.steps {
            if let Some(ms) = name.strip_prefix("sleep:") {
                let ms = ms.parse().unwrap();
                ex.sleep(name, Duration::from_millis(ms))
                    .await
                    .map_err(&show)?;
                out.push("slept".to_owned());
                continue;
            }
            if let Some(promise) = name.strip_prefix("promise:") {
                let value: String = ex
                    .promise(promise, Duration::from_secs(60))
                    .await
                    .map_err(&show)?;
                out.push(value);
                continue;
            }
            let env = &self.env;
            let key = &flow.key;
            let value: String = ex
                .step(name, async move {
                    let pid = std::process::id();
                    env.note(&format!("{key} {name} {pid}"));
                    if let Some((held, how_long)) = &env.hold
                        && held == name
                    {
                        tokio::time::sleep(*how_long).await;
                    }
                    format!("{name}@{pid}")
                })
                .await
                .map_err(&show)?;
            out.push(value);
        }
        if flow.finish {
            ex.finish(&out).await.map_err(&show)?;
        }
        Ok(out)
    }
}

impl Actor for Workflows {
    const MAILBOX: conclib_core::MailboxConfig = conclib_core::MailboxConfig::Unbounded;
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<RunFlow>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        match req.extract::<RunFlow>() {
            Ok((RunFlow(flow), r)) => r.respond(self.run(flow).await),
            Err(req) => req.reject(),
        }
    }
}

/// `member URL NS SYSTEM LEASE_MS NOTES HOLD_STEP HOLD_MS`: hosts `wf:{id}` (HOLD_STEP `-`:
/// no step holds); prints READY, then waits for orders.
pub(crate) async fn member(args: &[String]) -> i32 {
    let [url, ns, system_id, lease_ms, notes, hold_step, hold_ms] = args else {
        return 2;
    };
    let notes = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(notes)
        .unwrap();
    let env = Env {
        notes: Some(Arc::new(std::sync::Mutex::new(notes))),
        hold: (hold_step != "-").then(|| {
            (
                hold_step.clone(),
                Duration::from_millis(hold_ms.parse().unwrap()),
            )
        }),
    };
    let config = peer_config(url, ns, system_id, lease_ms);
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("wf:{id}", move |a| {
            let env = env.clone();
            async move { Ok::<_, String>(Workflows::new(Journal::new(a.into_store()), env)) }
        })
        .await
        .unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    proxy.shutdown().await.unwrap();
    println!("STOPPED");
    0
}

/// The lines noted in `path`.
pub(crate) fn notes(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
