//! The short form of `examples/durable_workflows.rs`: 100 five-step workflows (half of them
//! with a durable sleep and a promise) on 3 member processes while members are SIGKILLed at
//! random points (at most 6) and Redis (AOF, `appendfsync always`) is SIGKILLed and
//! restarted once: every workflow completes, every promise is taken with the value it was
//! resolved with, no step whose record committed runs again, and a step cut between its
//! side effect and its record runs again at most once per kill. Then the throughput rounds,
//! small (figures printed, not asserted). The members are this binary, re-executed in the
//! `member` role.

use conclib_examples::durable::{self, Options};

const ROLE: &str = "CONCLIB_DURABLE_MEMBER";

async fn killed_members_lose_no_workflow_and_rerun_no_committed_step() {
    let options = Options {
        member_program: std::env::current_exe().expect("this binary"),
        member_args: Vec::new(),
        member_env: vec![(ROLE.into(), "1".into())],
        workflows: 100,
        callers: 16,
        max_kills: 6,
        restart_redis: true,
        urns: 16,
        per_round: 5,
    };
    let outcome = durable::run(&options).await.expect("the scenario runs");
    println!("{}", outcome.line());
    assert_eq!(outcome.completed, 100, "{outcome:?}");
    assert_eq!(outcome.reexecuted_committed, 0, "{outcome:?}");
    assert!(outcome.kills >= 1, "{outcome:?}");
    assert_eq!(outcome.redis_restarts, 1, "{outcome:?}");
    assert_eq!(outcome.waited, 50, "{outcome:?}");
    assert_eq!(outcome.signals_lost, 0, "{outcome:?}");
    assert!(outcome.max_cut_per_step <= outcome.kills, "{outcome:?}");
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        // `URL NS NAME NOTES`, as `durable::run` starts a member.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        if let Err(e) = rt.block_on(durable::member(&args)) {
            eprintln!("member failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    conclib_testkit::run(conclib_testkit::tests![
        killed_members_lose_no_workflow_and_rerun_no_committed_step
    ]);
}
