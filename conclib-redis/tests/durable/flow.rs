//! The workflow actor of these tests (`wf:{id}`): each message runs one durable execution
//! whose steps note their side effect, one line each, in a notes file shared by every
//! process, and may hold inside a side effect (so that the test can kill or freeze the
//! process between the side effect and its record).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conclib_core::{
    Actor, ActorSystem, BoxError, Context, ExposedMessage, Message, RequestEnvelope, StopReason,
};
use conclib_redis::durable::{Begun, DurableError, Journal};
use conclib_redis::reminders::{ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders};
use conclib_redis::{ProxyClient, start_proxy};
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
    /// Whether the flow is its own wake message: a long sleep or a promise not resolved
    /// within 200 ms suspends it (in a member whose journal has wakes).
    pub(crate) wake: bool,
}

impl Flow {
    pub(crate) fn steps(key: &str, n: u32) -> Flow {
        Flow {
            key: key.to_owned(),
            steps: (1..=n).map(|i| format!("s{i}")).collect(),
            version: None,
            finish: true,
            wake: false,
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
    /// The URN, noted when the activation stops (passivated).
    urn: String,
}

impl Workflows {
    pub(crate) fn new(journal: Journal, env: Env, urn: &str) -> Self {
        Workflows {
            journal,
            env,
            urn: urn.to_owned(),
        }
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
            DurableError::Suspended => "SUSPENDED".to_owned(),
            other => other.to_string(),
        };
        let mut ex = match self.journal.begin::<Vec<String>>(&flow.key).await {
            Ok(Begun::Finished(result)) => return Ok(result),
            Ok(Begun::Running(ex)) => ex,
            Err(e) => return Err(show(e)),
        };
        if flow.wake {
            ex.wake_with(&flow).map_err(&show)?;
        }
        let promise_wait = if flow.wake {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(60)
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
                let value: String = ex.promise(promise, promise_wait).await.map_err(&show)?;
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
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<RunFlow>(),
        ExposedMessage::of::<ReminderTick>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<RunFlow>() {
            Ok((RunFlow(flow), r)) => return r.respond(self.run(flow).await),
            Err(req) => req,
        };
        match req.extract::<ReminderTick>() {
            Ok((tick, r)) if Journal::is_wake(&tick) => {
                let flow: Flow = tick.payload().unwrap();
                self.env
                    .note(&format!("WOKEN {} {}", flow.key, std::process::id()));
                match self.run(flow).await {
                    Ok(_) => r.respond(Ok(())),
                    Err(e) if e == "SUSPENDED" => r.respond(Ok(())),
                    Err(e) => r.respond(Err(e)),
                }
            }
            Ok((_, r)) => r.respond(Err("not a wake".to_owned())),
            Err(req) => req.reject(),
        }
    }

    async fn on_stop(
        &mut self,
        _ctx: &mut Context<Self>,
        _reason: &StopReason,
    ) -> Result<(), BoxError> {
        self.env
            .note(&format!("STOPPED {} {}", self.urn, std::process::id()));
        Ok(())
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
            let urn = a.urn().to_owned();
            async move { Ok::<_, String>(Workflows::new(Journal::new(a.into_store()), env, &urn)) }
        })
        .await
        .unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    proxy.shutdown().await.unwrap();
    println!("STOPPED");
    0
}

/// The lines noted in `path` (those a newline ended: `common::complete_lines`).
pub(crate) fn notes(path: &PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    crate::common::complete_lines(&text)
        .map(str::to_owned)
        .collect()
}

/// `woken URL NS SYSTEM LEASE_MS NOTES IDLE_MS`: hosts `wf:{id}` with wakes (a sleep of more
/// than 300 ms suspends), passivated after IDLE_MS idle, and runs a reminder poller; prints
/// READY, then waits for orders.
pub(crate) async fn woken_member(args: &[String]) -> i32 {
    let [url, ns, system_id, lease_ms, notes, idle_ms] = args else {
        return 2;
    };
    let notes = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(notes)
        .unwrap();
    let env = Env {
        notes: Some(Arc::new(std::sync::Mutex::new(notes))),
        hold: None,
    };
    let config = peer_config(url, ns, system_id, lease_ms);
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let reminders = Reminders::new(&client);
    proxy
        .activate("wf:{id}", move |a| {
            let env = env.clone();
            let urn = a.urn().to_owned();
            env.note(&format!("ACTIVATED {urn} {}", std::process::id()));
            let journal = Journal::new(a.into_store()).with_wakes(
                reminders.clone(),
                urn.clone(),
                Duration::from_millis(300),
            );
            async move { Ok::<_, String>(Workflows::new(journal, env, &urn)) }
        })
        .passivate_after(Duration::from_millis(idle_ms.parse().unwrap()))
        .await
        .unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default()
            .with_poll_interval(Duration::from_millis(50))
            .with_retry_after(Duration::from_millis(200)),
    )
    .unwrap();
    println!("READY");
    wait_for_orders(&proxy).await;
    poller.shutdown().await;
    proxy.shutdown().await.unwrap();
    client.shutdown().await;
    println!("STOPPED");
    0
}
