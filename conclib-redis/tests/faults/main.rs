//! Fault injection against the proxy's guarantees: a serving process killed (SIGKILL) or
//! frozen (SIGSTOP) past its lease (and its URN keys given away meanwhile), a lease no
//! replica confirms, a flood of asks on a slow actor, entry ids a hostile
//! client chose, a proxy restarted after a crash, clients dropped by the hundred. Real
//! redis-server, real child processes (this test binary in the peer's role), every wait
//! bounded, every child killed and reaped by PID.
#[path = "../common/mod.rs"]
mod common;
mod given_away;
mod hostile;
mod kills;
mod lapse;
mod mailbox;
#[path = "../peer/mod.rs"]
mod peer;
mod shutdown;
mod unconfirmed;

use conclib_core::AskError;
use conclib_macros::message;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::actors::*;
use common::{config, eventually};
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, MailboxConfig, RequestEnvelope};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use given_away::*;
use hostile::*;
use kills::*;
use lapse::*;
use mailbox::*;
use shutdown::*;
use unconfirmed::*;

fn main() {
    // The peer's role first, before anything else runs.
    peer::run_if_started_as_one();
    conclib_testkit::run(conclib_testkit::tests![
        accepted_tells_survive_a_sigkill_of_the_serving_process,
        a_tell_in_the_wrong_stream_is_forwarded_to_the_urns_holder,
        a_process_paused_past_its_lease_does_not_serve_a_urn_taken_over,
        a_process_paused_past_its_lease_with_many_urn_keys_serves_again,
        a_lapse_claims_again_only_the_urn_keys_given_away,
        a_paused_process_replaced_by_its_own_system_hands_on_what_it_reads,
        a_flood_gets_mailbox_full_at_once_and_expired_asks_never_run,
        a_request_older_than_the_room_wait_gets_the_room_there_is_or_mailbox_full_at_once,
        a_tell_refused_for_a_full_mailbox_is_counted_as_rejected,
        an_entry_id_from_the_future_does_not_poison_the_stream,
        a_restarted_proxy_takes_over_at_once_when_its_predecessor_provably_died,
        dropped_clients_close_their_connections_at_once,
        start_redis_refuses_entries_larger_than_any_proxy_accepts,
        every_shutdown_returns_within_its_bound_while_redis_is_frozen,
        a_restarting_system_answers_unavailable_never_unknown_urn,
        an_ask_while_the_lease_is_unconfirmed_waits_for_it_never_unknown_urn,
    ]);
}

/// A serving process: this test binary in the peer's role, with counters at some URNs.
struct Peer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: i32,
}

impl Peer {
    async fn serve(
        config: &ProxyConfig,
        system: &str,
        urns: &[&str],
        notes: &Path,
        lease_ms: u64,
    ) -> Peer {
        Peer::serve_with(config, system, urns, notes, lease_ms, false).await
    }

    /// [`serve`](Self::serve), with `release_on_shutdown` when `release`.
    async fn serve_with(
        config: &ProxyConfig,
        system: &str,
        urns: &[&str],
        notes: &Path,
        lease_ms: u64,
        release: bool,
    ) -> Peer {
        let env: &[(&str, String)] = if release {
            &[("CONCLIB_TEST_RELEASE", String::new())]
        } else {
            &[]
        };
        Peer::serve_env(config, system, urns, notes, lease_ms, env).await
    }

    /// [`serve`](Self::serve), with more of the peer's settings in its environment (the
    /// peer's module docs).
    async fn serve_env(
        config: &ProxyConfig,
        system: &str,
        urns: &[&str],
        notes: &Path,
        lease_ms: u64,
        env: &[(&str, String)],
    ) -> Peer {
        let mut command = peer::command();
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut child = command
            .args(["serve", &config.url, &config.namespace, system])
            .args(urns)
            .env("CONCLIB_TEST_NOTES", notes)
            .env("CONCLIB_TEST_LEASE_MS", lease_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().expect("a running child")).unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("the peer starts within 30 s");
        assert_eq!(ready.unwrap().as_deref(), Some("READY"));
        Peer {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// SIGSTOP, returning once every thread of it stopped.
    async fn freeze(&self) {
        conclib_testkit::freeze(self.pid.unsigned_abs()).await;
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    /// SIGKILL, then reap.
    async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed child is reaped")
            .unwrap();
        assert!(!status.success());
    }

    /// The URNs activated in it now (its `ProxyHandle::activations`).
    async fn activations(&mut self) -> Vec<String> {
        self.stdin.write_all(b"activations\n").await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("the peer answers within 10 s")
            .unwrap()
            .unwrap_or_default();
        let list = line
            .strip_prefix("ACTIVATIONS")
            .expect("an ACTIVATIONS line");
        list.split_whitespace().map(str::to_owned).collect()
    }

    async fn stop(mut self) {
        self.stdin.write_all(b"stop\n").await.unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("the peer stops within 20 s");
        assert_eq!(stopped.unwrap().as_deref(), Some("STOPPED"));
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the peer stops")
            .unwrap();
        assert!(status.success());
    }
}

/// The numbers in a notes file, with how often each was recorded.
fn notes(path: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in common::complete_lines(&text) {
            if let Ok(n) = line.parse() {
                *seen.entry(n).or_insert(0) += 1;
            }
        }
    }
    seen
}

fn temp_file(tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "conclib-faults-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

async fn raw_client(config: &ProxyConfig) -> Client {
    common::plain_client(&config.url).await
}

async fn raw(client: &Client, args: Vec<&str>) -> Result<Value, fred::error::Error> {
    common::command(client, &args).await
}
