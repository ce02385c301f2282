//! Redis fails over under load, on real topologies on loopback (`conclib_testkit::redis_ha`):
//! 3 member processes activate `acct:{id}` counters saved through the fenced `StateStore`,
//! 64 callers ask and tell them without pause, and the primary is SIGKILLed after its
//! replicas were stalled for `--lag-ms`, so that the promoted replica lacks its last writes
//! (`examples/failover.rs` says what is counted). One line per topology:
//!
//! `RESULT topology=sentinel promotions=.. splits=.. state_rollbacks=.. lost_accepted=..
//! repeated=.. first_ok_after_promotion_ms=.. overruns=.. durability=..`
//!
//! `cargo run -p conclib-examples --example redis_failover -- --promotions 20 --lag-ms 2000
//! --durability replicas --topology both`. Every process it starts is killed by PID.

use std::time::Duration;

use conclib_examples::BoxError;
use conclib_examples::failover::{self, Options, Topology};

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(failover::member(&args[2], &args[3], &args[4]));
    }
    let flag = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let promotions: usize = flag("--promotions", "3").parse()?;
    let lag = Duration::from_millis(flag("--lag-ms", "2000").parse()?);
    let durability = flag("--durability", "primary");
    let topologies = match flag("--topology", "sentinel").as_str() {
        "cluster" => vec![Topology::Cluster],
        "both" => vec![Topology::Sentinel, Topology::Cluster],
        _ => vec![Topology::Sentinel],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for topology in topologies {
        let options = Options {
            member_program: std::env::current_exe()?,
            member_args: vec!["member".into()],
            member_env: Vec::new(),
            topology,
            promotions,
            lag,
            durability: durability.clone(),
            callers: 64,
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
