//! Redis fails over under load, on real topologies on loopback (`conclib_testkit::redis_ha`):
//! 3 member processes activate `acct:{id}` counters saved through the fenced `StateStore`,
//! serve the `ledger` group and fire reminders; 64 callers ask and tell the counters and
//! the group, register reminders and publish to a durable topic without pause; and the
//! primary is SIGKILLed after its replicas were stalled for `--lag-ms`, so that the promoted
//! replica lacks its last writes (`examples/failover/mod.rs` says what is counted). One line
//! per topology:
//!
//! `RESULT topology=sentinel promotions=.. splits=.. state_rollbacks=.. lost_accepted=..
//! repeated=.. reminders_lost=.. events_lost=.. first_ok_after_promotion_ms=.. overruns=..
//! durability=..` (and what was done: asks, tells, group asks, reminders, events)
//!
//! `cargo run -p conclib-examples --example redis_failover -- --promotions 20 --lag-ms 2000
//! --durability replicas --topology both` (`--callers`: 64). `--cost 3`: instead, 3
//! alternated rounds of each level on one Sentinel topology, 64 asks in flight, each a
//! fenced state write: `RESULT cost durability=.. asks_per_s=.. p50_ms=.. p99_ms=..
//! cpu_us_per_ask=..` (the member's, this process's and the Redis servers' CPU). Every
//! process it starts is killed by PID.

use std::time::Duration;

use conclib_examples::BoxError;
use conclib_examples::failover::{self, Options, Topology};

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") {
        conclib_examples::init_tracing();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(failover::member(&args[2], &args[3], &args[4]));
    }
    conclib_examples::init_tracing();
    let flag = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let promotions: usize = flag("--promotions", "3").parse()?;
    let lag = Duration::from_millis(flag("--lag-ms", "2000").parse()?);
    let durability = flag("--durability", "primary");
    let callers: usize = flag("--callers", "64").parse()?;
    let python_callers: usize = flag("--python-callers", "16").parse()?;
    let topologies = match flag("--topology", "sentinel").as_str() {
        "cluster" => vec![Topology::Cluster],
        "both" => vec![Topology::Sentinel, Topology::Cluster],
        _ => vec![Topology::Sentinel],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(rounds) = args
        .iter()
        .position(|a| a == "--cost")
        .map(|_| flag("--cost", "3"))
    {
        // The normal path's cost of each level, alternated rounds in one run.
        let options = Options {
            member_program: std::env::current_exe()?,
            member_args: vec!["member".into()],
            member_env: Vec::new(),
            topology: Topology::Sentinel,
            promotions: 0,
            lag,
            durability: durability.clone(),
            callers,
            python_callers,
        };
        let rounds = rt.block_on(failover::cost(&options, rounds.parse()?, 5))?;
        for r in rounds {
            println!(
                "RESULT cost durability={} asks_per_s={:.0} p50_ms={:.2} p99_ms={:.2} cpu_us_per_ask={:.0}",
                r.durability, r.asks_per_s, r.p50_ms, r.p99_ms, r.cpu_us_per_ask
            );
        }
        return Ok(());
    }
    for topology in topologies {
        let options = Options {
            member_program: std::env::current_exe()?,
            member_args: vec!["member".into()],
            member_env: Vec::new(),
            topology,
            promotions,
            lag,
            durability: durability.clone(),
            callers,
            python_callers,
        };
        let outcome = rt.block_on(failover::run(&options))?;
        eprintln!("errors by kind: {:?}", outcome.errors);
        println!(
            "{}",
            outcome.line(topology, &failover::durability(&durability).label())
        );
    }
    Ok(())
}
