//! The short form of `examples/redis_failover.rs`: a Sentinel topology (a primary, 2
//! replicas, 3 sentinels) fails over twice under 64 callers, its replicas stalled for 2 s
//! before each SIGKILL of the primary, so that the promoted replica lacks the primary's last
//! writes. At `Durability::Replicas { n: 2 }`, both replicas (the Python callers' client at
//! `Durability.replicas(2)` too): no URN is served by two systems at once, no activation
//! loads a count lower than one acknowledged, every tell a Rust caller was told accepted (to
//! a counter or to the `ledger` group) is handled, every tell a Python caller was told
//! accepted reaches a member's handler (handled, or its handler's own save failed:
//! counted), every reminder whose registration was
//! acknowledged fires, every durable event whose publish was acknowledged reaches the
//! subscriber group, callers meet typed errors only, and none returns past its bound +
//! 250 ms.
//! The members are this binary, re-executed in the `member` role.

use std::time::Duration;

use conclib_examples::failover::{self, Options, Topology};

const ROLE: &str = "CONCLIB_FAILOVER_MEMBER";

async fn acknowledged_writes_survive_lagging_sentinel_promotions() {
    let options = Options {
        member_program: std::env::current_exe().expect("this binary"),
        member_args: Vec::new(),
        member_env: vec![(ROLE.into(), "1".into())],
        topology: Topology::Sentinel,
        promotions: 2,
        lag: Duration::from_millis(2000),
        durability: "replicas:2".into(),
        callers: 64,
        python_callers: 16,
    };
    let outcome = failover::run(&options).await.expect("the scenario runs");
    println!("{}", outcome.line(Topology::Sentinel, "replicas=2/500ms"));
    assert_eq!(outcome.promotions, 2);
    assert_eq!(outcome.splits, 0, "{outcome:?}");
    assert_eq!(outcome.state_rollbacks, 0, "{outcome:?}");
    assert_eq!(outcome.lost_accepted, 0, "{outcome:?}");
    assert_eq!(outcome.reminders_lost, 0, "{outcome:?}");
    assert_eq!(outcome.events_lost, 0, "{outcome:?}");
    assert_eq!(outcome.overruns, 0, "{outcome:?}");
    assert_eq!(outcome.untyped, 0, "{outcome:?}");
    assert_eq!(outcome.py_lost_accepted, 0, "{outcome:?}");
    assert_eq!(outcome.py_overruns, 0, "{outcome:?}");
    assert!(
        outcome.asks_ok > 0
            && outcome.tells_accepted > 0
            && outcome.group_asks_ok > 0
            && outcome.reminders_registered > 0
            && outcome.events_published > 0,
        "{outcome:?}"
    );
    assert!(outcome.first_ok_after_promotion_ms < 20_000, "{outcome:?}");
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        // `URL NAME DURABILITY`, as `failover::run` starts a member.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        if let Err(e) = rt.block_on(failover::member(&args[0], &args[1], &args[2])) {
            eprintln!("member failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    conclib_testkit::run(conclib_testkit::tests![
        acknowledged_writes_survive_lagging_sentinel_promotions
    ]);
}
