//! A rolling upgrade under load, with real processes: `members` member processes activate
//! `acct:{id}` accounts (a count in memory, saved through the fenced `StateStore` at each
//! tell), caller processes ask and tell all of them without pause, and each member is
//! replaced in turn: its successor (of build 2, below) starts and is ready, then the member gets
//! SIGTERM and drains ([`ProxyHandle::drain`](conclib::redis::ProxyHandle::drain)) before it
//! exits. What is counted, from what the callers saw and the members printed:
//!
//! - `asks`, `failed_asks` (any error), `timeouts`, `decode_errors` (an ask refused as
//!   undecodable, or a reply the caller could not decode);
//! - `p99_ratio_roll_to_steady`: the Rust callers' answered asks sent from the first
//!   successor's start to the last member's exit (`roll_ms`: every successor's start and
//!   every drain), their p99, over the p99 of the same callers' answered asks sent in as
//!   long a window just before it (`steady_ms`; never sooner than [`WARM_UP`] after the
//!   last caller started: shorter then, and said); `roll_asks`, `steady_asks`: how many
//!   each p99 is of; `slow_asks`: the roll's answered asks over twice that steady p99 (a
//!   shorter roll has fewer quiet asks beside them, and a higher p99 for as many slow
//!   ones); `stall_ms_steady`, `stall_ms_roll`: how long, per caller, the callers' own
//!   runtimes were not run in each window (CPU the machine did not give them:
//!   `rolling/waits.rs`), and `slow_moved`, `slow_stalled`, `slow_stale`, `slow_other`: the
//!   slow asks by where they waited (their account moving, their caller stalled, a route
//!   its caller held from before the account moved, none of these);
//! - `drain_ms_max`: the longest a member took from its SIGTERM to its exit;
//! - `moves`: the accounts' stops during the roll (each a move: a drain's, a rebalance's,
//!   a request's only build 2 decodes), over the accounts: `moves_per_account`;
//! - `pause_p99_ms`: the largest of the drains' p99 (over the URNs each handed over) of
//!   the time from an activation's stop to its URN's release;
//! - `state_mismatches`: URNs whose count, asked at the end, is not the number of tells
//!   the callers had accepted for it, or whose number of asks answered, kept in memory
//!   only and carried from member to member (`StateStore::dehydrate`, `rehydrate`), is not
//!   the number of asks answered (`memory_mismatches`: those); `tells_lost`,
//!   `tells_repeated`: the tells' differences summed;
//! - `py_asks`, `py_failed`, `py_timeouts`: the asks of the Python caller processes
//!   (`rolling/python.rs`; `py_callers=0` when no Python interpreter imports `conclib`);
//! - `ticks`, `ticks_lost`, `ticks_doubled`: the first `reminders` accounts each have a
//!   reminder every 200 ms, delivered by every member's `ReminderPoller` (shut down before
//!   the member drains); per account, the due times from its first handled tick to its
//!   last that no delivery stood for, and those more than one did (`rolling/ticks.rs`).
//!
//! The successors are build 2 ([`AccountV2`]): its `Add` has an optional field more (its
//! version 2) and it answers a new message, `Audit`. Every other caller process is of
//! build 2 too: it tells build 2's `Add` from the start (build 1 members decode it: the
//! calls travel in MessagePack, fields by name), and asks `Audit` once the first build 2
//! member serves, or the first `new_message_from` (a build 1 member holding the URN hands
//! it to a build 2 member, `proxy/scale/versions.rs`). `decode_errors` counts the asks refused
//! `UnsupportedVersion` as well.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclib::redis::codec::MsgPack;
use conclib::redis::{ProxyClient, ProxyConfig};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::BoxError;

mod caller;
mod member;
mod phases;
mod python;
mod ticks;
mod waits;

pub use caller::caller;
pub use member::{Account, AccountV2, Add, AddV2, Audit, Total, member};

/// The namespace of the run.
const NAMESPACE: &str = "rolling";

fn micros_now() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(u64::MAX)
}

/// How the run is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// The program to start members and callers with.
    pub program: std::path::PathBuf,
    /// The arguments before the role.
    pub args: Vec<String>,
    /// Environment variables for them.
    pub env: Vec<(String, String)>,
    /// Member processes (each replaced once).
    pub members: usize,
    /// `acct:{id}` URNs activated.
    pub urns: u64,
    /// Caller processes.
    pub callers: usize,
    /// Calls in flight in each caller process.
    pub in_flight: usize,
    /// Calls per second each caller process (Rust or Python) sends, `0`: as fast as its
    /// `in_flight` calls are answered. A paced caller's ask is timed from when it was due,
    /// so one sent late (every call in flight was waiting) counts its wait.
    pub rate: u32,
    /// Python caller processes (each `in_flight` asks at a time), beside the Rust ones.
    pub python_callers: usize,
    /// Accounts (the first ones) with a periodic reminder.
    pub reminders: u64,
    /// Each ask's timeout.
    pub ask_timeout: Duration,
    /// Load before the first replacement (the steady state measured), and after the last.
    pub steady: Duration,
    /// How long the driver waits after a replacement before the next one (as an
    /// orchestrator's `minReadySeconds` would), part of the roll; zero by default.
    pub between: Duration,
    /// How many members of build 2 serve when build 2's callers begin to ask `Audit`
    /// (at most `members`: before the last drain); 1 by default, as soon as one serves.
    /// A team that deploys a new message's callers once most members have the message
    /// spreads its first moves over those members (BENCHMARKS.md, "Rolling upgrade").
    pub new_message_from: usize,
    /// Whether a member is drained (SIGTERM) before it exits; `false`: it shuts down
    /// without draining (its standard input closed), for comparison.
    pub drain: bool,
    /// Whether to print, to standard error, the roll's asks by the step of a replacement
    /// they started in (`rolling/phases.rs`).
    pub phases: bool,
}

/// What the run counted (the module's docs).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Asks sent.
    pub asks: u64,
    /// Asks that failed, whatever the error.
    pub failed_asks: u64,
    /// Of those, asks that timed out.
    pub timeouts: u64,
    /// Of those, asks whose request or reply could not be decoded.
    pub decode_errors: u64,
    /// Tells sent.
    pub tells: u64,
    /// Tells refused.
    pub failed_tells: u64,
    /// The answered asks' p99 (ms) in a window before the roll as long as the roll.
    pub p99_steady_ms: f64,
    /// The answered asks' p99 (ms) during the roll.
    pub p99_roll_ms: f64,
    /// How long the roll took (ms): from the first successor's start to the last member's
    /// exit. A shorter roll puts fewer quiet asks beside a replacement's slow ones.
    pub roll_ms: u64,
    /// The answered asks of the roll that took over twice the steady p99: how many asks a
    /// roll slows down, whatever its length.
    pub slow_asks: u64,
    /// The accounts' moves during the roll (their stops: a drain's, a rebalance's, a
    /// request's only build 2 decodes).
    pub moves: u64,
    /// [`moves`](Self::moves) over the accounts.
    pub moves_per_account: f64,
    /// How long the steady window was (ms): as long as the roll, unless the callers had
    /// not run for [`WARM_UP`] that long before it.
    pub steady_ms: u64,
    /// The answered asks each p99 is of: in the steady window, in the roll.
    pub steady_asks: u64,
    /// (As `steady_asks`.)
    pub roll_asks: u64,
    /// How long each Rust caller's runtime was not run, per caller, in the steady window
    /// and in the roll (ms).
    pub stall_ms_steady: f64,
    /// (As `stall_ms_steady`.)
    pub stall_ms_roll: f64,
    /// The slow asks whose account moved while they waited, those whose caller was
    /// stalled, those sent by a route from before their account moved, and the rest
    /// (`rolling/waits.rs`).
    pub slow_moved: u64,
    /// (As `slow_moved`.)
    pub slow_stalled: u64,
    /// (As `slow_moved`.)
    pub slow_stale: u64,
    /// (As `slow_moved`.)
    pub slow_other: u64,
    /// The longest a member took from its SIGTERM to its exit (ms).
    pub drain_ms_max: u64,
    /// The largest of the drains' p99 handing time per URN (ms).
    pub pause_p99_ms: u64,
    /// Activations handed over, all drains together.
    pub handed: u64,
    /// URNs whose final count is not the number of tells accepted for them.
    pub state_mismatches: u64,
    /// URNs whose asks counted in memory (carried at each move) are not the asks
    /// answered.
    pub memory_mismatches: u64,
    /// Tells accepted but not counted.
    pub tells_lost: u64,
    /// Tells counted more than once.
    pub tells_repeated: u64,
    /// Asks per second over the whole load.
    pub asks_per_s: f64,
    /// Python caller processes that ran.
    pub py_callers: u64,
    /// The Python callers' asks.
    pub py_asks: u64,
    /// Of those, asks that failed, whatever the error.
    pub py_failed: u64,
    /// Of those, asks that timed out.
    pub py_timeouts: u64,
    /// Due times handled, all reminded accounts together.
    pub ticks: u64,
    /// Due times between an account's first and last handled ticks that none stood for.
    pub ticks_lost: u64,
    /// Due times more than one delivery stood for (each extra one counted).
    pub ticks_doubled: u64,
    /// Errors other than timeouts, by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// The `RESULT` line.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "RESULT asks={} failed_asks={} timeouts={} decode_errors={} p99_ratio_roll_to_steady={:.2} drain_ms_max={} pause_p99_ms={} state_mismatches={} tells_lost={} tells_repeated={} memory_mismatches={} tells={} failed_tells={} handed={} p99_steady_ms={:.1} p99_roll_ms={:.1} asks_per_s={:.0} py_callers={} py_asks={} py_failed={} py_timeouts={} ticks={} ticks_lost={} ticks_doubled={} roll_ms={} slow_asks={} steady_ms={} steady_asks={} roll_asks={} stall_ms_steady={:.1} stall_ms_roll={:.1} slow_moved={} slow_stalled={} slow_stale={} slow_other={} moves={} moves_per_account={:.2}",
            self.asks,
            self.failed_asks,
            self.timeouts,
            self.decode_errors,
            if self.p99_steady_ms > 0.0 {
                self.p99_roll_ms / self.p99_steady_ms
            } else {
                0.0
            },
            self.drain_ms_max,
            self.pause_p99_ms,
            self.state_mismatches,
            self.tells_lost,
            self.tells_repeated,
            self.memory_mismatches,
            self.tells,
            self.failed_tells,
            self.handed,
            self.p99_steady_ms,
            self.p99_roll_ms,
            self.asks_per_s,
            self.py_callers,
            self.py_asks,
            self.py_failed,
            self.py_timeouts,
            self.ticks,
            self.ticks_lost,
            self.ticks_doubled,
            self.roll_ms,
            self.slow_asks,
            self.steady_ms,
            self.steady_asks,
            self.roll_asks,
            self.stall_ms_steady,
            self.stall_ms_roll,
            self.slow_moved,
            self.slow_stalled,
            self.slow_stale,
            self.slow_other,
            self.moves,
            self.moves_per_account,
        )
    }
}

/// A child process of the run, killed by PID and reaped on drop.
struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    async fn start(options: &Options, role: &[&str]) -> Result<Proc, BoxError> {
        let mut child = tokio::process::Command::new(&options.program)
            .args(&options.args)
            .args(role)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Proc { child, lines })
    }

    /// Writes a line to its standard input.
    async fn say(&mut self, line: &str) -> Result<(), BoxError> {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(())
    }

    /// Closes its standard input (a caller stops sending).
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    async fn line(&mut self, within: Duration) -> Result<String, BoxError> {
        let line = tokio::time::timeout(within, self.lines.next_line()).await??;
        line.ok_or_else(|| "the process ended".into())
    }

    fn signal(&self, signal: i32) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on the pid of a child not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    async fn exit(mut self, within: Duration) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("exited {status}").into())
                }
            }
            Err(_) => {
                let _ = self.child.kill().await;
                Err("did not exit in time: killed".into())
            }
        }
    }
}

async fn start_member(
    options: &Options,
    url: &str,
    name: &str,
    build: &str,
    ticks_dir: &str,
) -> Result<Proc, BoxError> {
    let mut m = Proc::start(options, &["member", url, name, build, ticks_dir]).await?;
    let ready = m.line(Duration::from_secs(30)).await?;
    if ready != "READY" {
        return Err(format!("member {name} did not start: {ready}").into());
    }
    Ok(m)
}

/// How long every caller has run before the steady window may begin: its first asks
/// (routes looked up, connections made) are not the steady state.
pub const WARM_UP: Duration = Duration::from_secs(1);

fn p99_ms(mut took_us: Vec<u64>) -> f64 {
    took_us.sort_unstable();
    took_us
        .get(took_us.len().saturating_sub(1) * 99 / 100)
        .map_or(0.0, |us| *us as f64 / 1000.0)
}

/// Runs the rolling upgrade (the module's docs).
///
/// # Errors
/// When a process does not start or misbehaves, or Redis cannot be started.
pub async fn run(options: &Options) -> Result<Report, BoxError> {
    let daemon = conclib::redis::start_redis(&ProxyConfig::default()).await?;
    let url = daemon.url();
    let dir = ticks::notes_dir()?;
    let result = roll(options, &url, &dir).await;
    daemon.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn roll(options: &Options, url: &str, dir: &std::path::Path) -> Result<Report, BoxError> {
    let ticks_dir = dir.to_str().ok_or("a temporary directory not in UTF-8")?;
    let mut members = Vec::new();
    for i in 0..options.members {
        members.push(start_member(options, url, &format!("m{i}-v1"), "1", ticks_dir).await?);
    }
    let client = ProxyClient::connect(
        &ProxyConfig::new(url)
            .with_namespace(NAMESPACE)
            .with_codec(MsgPack)
            .with_ask_timeout(Duration::from_secs(10)),
    )
    .await?;
    // Every URN activated before the load.
    let urns: Vec<String> = (0..options.urns).map(|u| format!("acct:{u}")).collect();
    for chunk in urns.chunks(50) {
        let asks = chunk.iter().map(|u| {
            let client = client.clone();
            let urn = u.clone();
            async move { client.ask(urn.as_str(), Total).await }
        });
        for r in futures_util::future::join_all(asks).await {
            r?;
        }
    }
    let reminded = &urns[..urns.len().min(options.reminders as usize)];
    ticks::register(&client, reminded).await?;
    // The callers send through the steady state, the roll, and as long again.
    let started = Instant::now();
    let mut callers = Vec::new();
    for c in 0..options.callers {
        callers.push(
            Proc::start(
                options,
                &[
                    "caller",
                    url,
                    &(c + 1).to_string(),
                    &options.urns.to_string(),
                    &options.in_flight.to_string(),
                    &options.ask_timeout.as_millis().to_string(),
                    &options.rate.to_string(),
                    // Every other caller of build 2.
                    if c % 2 == 1 { "2" } else { "1" },
                ],
            )
            .await?,
        );
    }
    let mut py_callers = Vec::new();
    for c in 0..options.python_callers {
        let seed = (options.callers + c + 1) as u64;
        let timeout = options.ask_timeout;
        match python::PyCaller::start(
            url,
            NAMESPACE,
            seed,
            options.urns,
            options.in_flight,
            options.rate,
            timeout,
        )
        .await?
        {
            Some(p) => py_callers.push(p),
            None => break,
        }
    }
    let load_ready = micros_now() + WARM_UP.as_micros() as u64;
    tokio::time::sleep(options.steady).await;
    let roll_start = micros_now();
    let mut report = Report::default();
    let mut pauses = Vec::new();
    let mut steps = phases::Phases::default();
    for (i, member) in std::mem::take(&mut members).into_iter().enumerate() {
        // The successor first, ready; then the member drained.
        steps.mark(format!("m{i} successor start"));
        let successor = start_member(options, url, &format!("m{i}-v2"), "2", ticks_dir).await?;
        steps.mark(format!("m{i} successor ready"));
        if i + 1 == options.new_message_from.clamp(1, options.members) {
            // Enough build 2 members serve: build 2's callers ask what only they have.
            for c in &mut callers {
                c.say("v2").await?;
            }
        }
        let mut member = member;
        let termed = Instant::now();
        if !options.drain {
            member.exit(Duration::from_secs(30)).await?;
            report.drain_ms_max = report.drain_ms_max.max(termed.elapsed().as_millis() as u64);
            members.push(successor);
            continue;
        }
        steps.mark(format!("m{i} SIGTERM"));
        member.signal(libc::SIGTERM);
        let drained = member.line(Duration::from_secs(30)).await?;
        steps.mark(format!("m{i} drained"));
        member.exit(Duration::from_secs(30)).await?;
        steps.mark(format!("m{i} exited"));
        let drain_ms = termed.elapsed().as_millis() as u64;
        let words: Vec<u64> = drained
            .strip_prefix("DRAINED ")
            .ok_or_else(|| format!("member m{i}-v1 said {drained:?}"))?
            .split(' ')
            .filter_map(|w| w.parse().ok())
            .collect();
        report.drain_ms_max = report.drain_ms_max.max(drain_ms);
        report.handed += words.get(1).copied().unwrap_or(0);
        pauses.push(words.get(2).copied().unwrap_or(0));
        members.push(successor);
        if i + 1 < options.members && !options.between.is_zero() {
            steps.mark(format!("m{i} waits before the next"));
            tokio::time::sleep(options.between).await;
        }
    }
    let roll_end = micros_now();
    report.pause_p99_ms = pauses.into_iter().max().unwrap_or(0);
    // The rest of the load, then every caller's record.
    tokio::time::sleep(options.steady).await;
    for c in &mut callers {
        c.close_stdin();
    }
    let load = started.elapsed();
    report.py_callers = py_callers.len() as u64;
    let mut answered = BTreeMap::<u64, u64>::new();
    for p in py_callers {
        let seen = p.stop().await?;
        report.py_asks += seen.asks;
        report.py_failed += seen.failed;
        report.py_timeouts += seen.timeouts;
        for (u, n) in seen.answered {
            *answered.entry(u).or_default() += n;
        }
        for (kind, n) in seen.errors {
            *report.errors.entry(kind).or_default() += n;
        }
    }
    let (mut steady, mut rolling) = (Vec::new(), Vec::new());
    let mut roll_asks = Vec::new();
    let mut stalls = Vec::new();
    let window = roll_end - roll_start;
    let steady_from = roll_start.saturating_sub(window).max(load_ready);
    let mut told = BTreeMap::<u64, u64>::new();
    let waited = Duration::from_secs(60);
    for (caller, mut c) in callers.into_iter().enumerate() {
        let mut stalled = Vec::new();
        loop {
            let line = c.line(waited).await?;
            if line == "DONE" {
                break;
            }
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["S", at, late] => stalled.push((at.parse()?, late.parse()?)),
                ["A", urn, start, end, outcome] => {
                    let (start, end): (u64, u64) = (start.parse()?, end.parse()?);
                    report.asks += 1;
                    if *outcome == "ok" {
                        *answered.entry(urn.parse()?).or_default() += 1;
                    }
                    match *outcome {
                        "ok" if start >= roll_start && start < roll_end => {
                            rolling.push(end - start);
                            let urn = urn.parse()?;
                            roll_asks.push(waits::Ask {
                                caller,
                                urn,
                                start,
                                end,
                            });
                        }
                        "ok" if start < roll_start && start >= steady_from => {
                            steady.push(end - start);
                        }
                        "ok" => {}
                        "timeout" => report.timeouts += 1,
                        "decode" => report.decode_errors += 1,
                        other => *report.errors.entry(other.to_owned()).or_default() += 1,
                    }
                    if *outcome != "ok" {
                        report.failed_asks += 1;
                    }
                }
                ["T", urn, outcome] => {
                    report.tells += 1;
                    if *outcome == "ok" {
                        *told.entry(urn.parse()?).or_default() += 1;
                    } else {
                        report.failed_tells += 1;
                        *report.errors.entry(format!("tell:{outcome}")).or_default() += 1;
                    }
                }
                _ => return Err(format!("a caller said {line:?}").into()),
            }
        }
        c.exit(Duration::from_secs(10)).await?;
        stalls.push(stalled);
    }
    report.asks_per_s = report.asks as f64 / load.as_secs_f64();
    (report.steady_asks, report.roll_asks) = (steady.len() as u64, rolling.len() as u64);
    report.p99_steady_ms = p99_ms(steady);
    report.p99_roll_ms = p99_ms(rolling);
    report.roll_ms = window / 1000;
    report.steady_ms = (roll_start - steady_from) / 1000;
    if report.steady_ms < report.roll_ms {
        eprintln!(
            "the steady window is shorter than the roll ({} ms against {} ms): a longer --steady-ms makes them equal",
            report.steady_ms, report.roll_ms
        );
    }
    let slow_us = (report.p99_steady_ms * 2000.0) as u64;
    report.slow_asks = roll_asks
        .iter()
        .filter(|a| a.end - a.start > slow_us)
        .count() as u64;
    (report.stall_ms_steady, _) = waits::stall_summary(&stalls, steady_from, roll_start);
    (report.stall_ms_roll, _) = waits::stall_summary(&stalls, roll_start, roll_end);
    let moves = waits::Moves::read(dir)?;
    report.moves = moves.stops_between(roll_start, roll_end);
    report.moves_per_account = report.moves as f64 / options.urns.max(1) as f64;
    let classes = waits::Classes::of(&roll_asks, slow_us, &moves, &stalls);
    (
        report.slow_moved,
        report.slow_stalled,
        report.slow_stale,
        report.slow_other,
    ) = (classes.moved, classes.stalled, classes.stale, classes.other);
    if options.phases {
        let (stalled, longest) = waits::stall_summary(&stalls, steady_from, roll_start);
        eprintln!(
            "steady len_ms={} asks={} p99_ms={:.1} callers_stalled_ms={stalled:.1} longest_stall_ms={longest:.1}",
            report.steady_ms, report.steady_asks, report.p99_steady_ms
        );
        eprint!(
            "{}",
            steps.report(&roll_asks, report.p99_steady_ms, &moves, &stalls, roll_end)
        );
        eprintln!("roll over_2x_steady: {}", classes.line());
    }
    // Every URN's count against the tells accepted for it, and its asks counted in
    // memory (carried at each move) against the asks answered: the warm-up's, the
    // callers', this one.
    for (u, urn) in urns.iter().enumerate() {
        let (total, asks) = client.ask(urn.as_str(), Total).await?;
        let sent = told.get(&(u as u64)).copied().unwrap_or(0);
        let asked = answered.get(&(u as u64)).copied().unwrap_or(0) + 2;
        if total != sent || asks != asked {
            report.state_mismatches += 1;
            report.tells_lost += sent.saturating_sub(total);
            report.tells_repeated += total.saturating_sub(sent);
        }
        if asks != asked {
            report.memory_mismatches += 1;
            eprintln!("{urn}: {asks} asks counted in memory, {asked} answered; its moves:");
            for line in waits::history(dir, urn)? {
                eprintln!("  {line}");
            }
        }
    }
    // No tick more, so that none is delivered to a member shutting down.
    ticks::cancel(&client, reminded).await?;
    client.shutdown().await;
    for m in members {
        m.exit(Duration::from_secs(15)).await?;
    }
    // Every member's poller has stopped: the ticks noted are all there are.
    (report.ticks, report.ticks_lost, report.ticks_doubled) = ticks::count(dir)?;
    Ok(report)
}
