//! The peer role: a member system that activates `rem:{id}` [`Reminded`] actors and (unless
//! told not to) runs a [`ReminderPoller`]. What its actors handle is written to a notes file,
//! one event a line, which the tests read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_core::{ActorSystem, StopReason};
use conclib_macros::{actor, message};
use conclib_redis::{
    ProxyClient,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders},
    scale::Activation,
    start_proxy,
};
use serde::{Deserialize, Serialize};

use crate::peers::{Peer, peer_config, temp_notes, wait_for_orders};

/// What a reminder carries in these tests: a number naming the tick in the notes, and how
/// long its handler holds before answering.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Note {
    pub(crate) number: u64,
    pub(crate) hold_ms: u64,
}

/// Makes the actor register a reminder for itself, from its own handler.
#[message(error = String, name = "rem.RegisterOwn")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RegisterOwn {
    pub(crate) name: String,
    pub(crate) delay_ms: u64,
    pub(crate) number: u64,
}

type Notes = Arc<Mutex<std::fs::File>>;

fn note(notes: &Notes, line: &str) {
    let mut f = notes.lock().unwrap();
    let _ = writeln!(f, "{line}");
    let _ = f.flush();
}

/// An activated actor that notes the reminders it handles.
#[actor]
pub(crate) struct Reminded {
    urn: String,
    system: String,
    reminders: Reminders,
    notes: Notes,
}

#[actor]
impl Reminded {
    /// Notes `tick URN NAME NUMBER MISSED DUE SYSTEM`, after `start ...` and a hold if the
    /// payload asks for one.
    #[handle(remote)]
    async fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        let n: Note = tick.payload().map_err(|e| e.to_string())?;
        if n.hold_ms > 0 {
            note(
                &self.notes,
                &format!("start {} {} {}", self.urn, n.number, self.system),
            );
            tokio::time::sleep(Duration::from_millis(n.hold_ms)).await;
        }
        note(
            &self.notes,
            &format!(
                "tick {} {} {} {} {} {}",
                self.urn,
                tick.name(),
                n.number,
                tick.missed(),
                tick.due_ms(),
                self.system
            ),
        );
        Ok(())
    }

    /// Registers a reminder for its own URN; notes `registered URN NUMBER SYSTEM`.
    #[handle(remote)]
    async fn register_own(&mut self, r: RegisterOwn) -> Result<(), String> {
        let reminder = Reminder::after(r.name, Duration::from_millis(r.delay_ms)).payload(&Note {
            number: r.number,
            hold_ms: 0,
        });
        self.reminders
            .register(&self.urn, reminder)
            .await
            .map_err(|e| e.to_string())?;
        note(
            &self.notes,
            &format!("registered {} {} {}", self.urn, r.number, self.system),
        );
        Ok(())
    }

    #[on_stop]
    fn stopped(&mut self, _reason: &StopReason) {
        note(
            &self.notes,
            &format!("stopped {} {}", self.urn, self.system),
        );
    }
}

/// `reminded URL NS SYSTEM LEASE_MS IDLE_MS NOTES ACTIVATE(0|1) POLL(0|1) CLAIM_MS` (0: the
/// default claim lease).
pub(crate) async fn reminded(args: &[String]) -> i32 {
    let [
        url,
        ns,
        system_id,
        lease_ms,
        idle_ms,
        notes,
        activate,
        poll,
        claim_ms,
    ] = args
    else {
        return 2;
    };
    let notes: Notes = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(notes)
            .unwrap(),
    ));
    let config = peer_config(url, ns, system_id, lease_ms);
    let system = ActorSystem::new(system_id);
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let reminders = Reminders::new(&client);
    if activate == "1" {
        let system_name = system_id.clone();
        let notes = notes.clone();
        proxy
            .activate("rem:{id}", move |a: Activation| {
                let actor = Reminded {
                    urn: a.urn().to_owned(),
                    system: system_name.clone(),
                    reminders: reminders.clone(),
                    notes: notes.clone(),
                };
                note(&notes, &format!("activated {} {}", a.urn(), system_name));
                async move { Ok::<_, String>(actor) }
            })
            .passivate_after(Duration::from_millis(idle_ms.parse().unwrap()))
            .await
            .unwrap();
    }
    let claim = Duration::from_millis(claim_ms.parse().unwrap());
    let poller = (poll == "1").then(|| {
        // 0: the default claim lease and delivery timeout.
        let options = if claim.is_zero() {
            ReminderPollerOptions::default()
        } else {
            ReminderPollerOptions::default().with_claim_lease(claim, claim / 2)
        };
        let options = options
            .with_poll_interval(Duration::from_millis(50))
            .with_retry_after(Duration::from_millis(200));
        ReminderPoller::start(&client, options).unwrap()
    });
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    println!("READY");
    // SIGTERM: the poller stopped (its deliveries finished and acknowledged), then the
    // proxy drained, as a member leaving in a rolling update does.
    let drain = tokio::select! {
        () = wait_for_orders(&proxy) => false,
        _ = term.recv() => true,
    };
    if let Some(p) = poller {
        eprintln!("poller of {system_id}: {:?}", p.stats());
        p.shutdown().await;
    }
    if drain {
        let drained = proxy.drain().await.unwrap();
        println!("DRAINED {}", drained.handed);
    } else {
        proxy.shutdown().await.unwrap();
    }
    client.shutdown().await;
    println!("STOPPED");
    0
}

/// This binary in its peer role.
pub(crate) fn peer_main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("reminded") => reminded(&args[2..]).await,
            _ => 2,
        }
    });
    std::process::exit(code);
}

/// How a member is started.
pub(crate) struct Member<'a> {
    pub(crate) system: &'a str,
    pub(crate) lease_ms: u64,
    pub(crate) idle_ms: u64,
    pub(crate) activate: bool,
    pub(crate) poll: bool,
    pub(crate) claim_ms: u64,
}

impl Member<'_> {
    pub(crate) fn new(system: &str) -> Member<'_> {
        Member {
            system,
            lease_ms: 2000,
            idle_ms: 600_000,
            activate: true,
            poll: true,
            claim_ms: 4000,
        }
    }

    /// Starts it (its notes file in `notes`, created if `None`).
    pub(crate) async fn start(
        &self,
        config: &conclib_redis::ProxyConfig,
        notes: Option<&Path>,
    ) -> (Peer, PathBuf) {
        let notes = notes.map_or_else(|| temp_notes(self.system), Path::to_owned);
        let peer = Peer::start(&[
            "reminded",
            &config.url,
            &config.namespace,
            self.system,
            &self.lease_ms.to_string(),
            &self.idle_ms.to_string(),
            notes.to_str().unwrap(),
            if self.activate { "1" } else { "0" },
            if self.poll { "1" } else { "0" },
            &self.claim_ms.to_string(),
        ])
        .await;
        (peer, notes)
    }
}

/// The lines of these notes files starting with `kind`, split into words (without it).
pub(crate) fn lines(paths: &[PathBuf], kind: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for p in paths {
        if let Ok(text) = std::fs::read_to_string(p) {
            for line in crate::common::complete_lines(&text) {
                let mut words = line.split(' ');
                if words.next() == Some(kind) {
                    out.push(words.map(str::to_owned).collect());
                }
            }
        }
    }
    out
}
