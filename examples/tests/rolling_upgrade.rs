//! The short form of `examples/rolling_upgrade.rs`: 3 members serving 120 accounts held in
//! memory are replaced one by one by members of build 2 (a successor started, then the
//! member drained on SIGTERM) while 2 caller processes, one of each build, keep 32 calls in
//! flight each (64 callers): build 2's caller tells build 2's `Add` (an optional field
//! more) throughout and asks build 2's new `Audit` once a build 2 member serves. No ask
//! fails (5 s deadline), none is undecodable or refused `UnsupportedVersion`, every account counts exactly the tells
//! accepted for it (none lost, none repeated) and, in memory only (carried from member to
//! member by `StateStore::dehydrate` / `rehydrate`), exactly the asks answered (a Python
//! caller process's among them, when a Python interpreter imports `conclib`; none of its
//! asks fails), and each member exits within its drain and shutdown bounds. 20 accounts
//! have a reminder every 200 ms, delivered by the members' pollers: across the roll no due
//! time goes unhandled and none is handled twice. The processes are this binary, re-executed in a role.

use std::time::Duration;

use conclib_examples::rolling::{self, Options};

const ROLE: &str = "CONCLIB_ROLLING_ROLE";

async fn members_replaced_one_by_one_under_load_fail_no_request() {
    let options = Options {
        program: std::env::current_exe().expect("this binary"),
        args: Vec::new(),
        env: vec![(ROLE.into(), "1".into())],
        members: 3,
        urns: 120,
        callers: 2,
        in_flight: 32,
        rate: 0,
        python_callers: 1,
        reminders: 20,
        ask_timeout: Duration::from_secs(5),
        steady: Duration::from_secs(2),
        drain: true,
        between: Duration::ZERO,
        new_message_from: 1,
        phases: false,
    };
    let report = rolling::run(&options).await.expect("the scenario runs");
    println!("{}", report.line());
    assert!(report.asks > 0 && report.tells > 0, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.failed_asks, 0, "{report:?}");
    assert_eq!(report.decode_errors, 0, "{report:?}");
    assert_eq!(report.failed_tells, 0, "{report:?}");
    assert_eq!(report.state_mismatches, 0, "{report:?}");
    assert_eq!(
        report.memory_mismatches, 0,
        "in-memory state carried: {report:?}"
    );
    let bound = conclib::redis::config::DEFAULT_DRAIN_TIMEOUT
        + conclib::redis::config::DEFAULT_SHUTDOWN_TIMEOUT;
    assert!(
        report.drain_ms_max <= bound.as_millis() as u64,
        "{report:?}"
    );
    // Accounts were handed over by the drains (those that build 2's `Audit` had not moved
    // to a build 2 member first).
    assert!(report.handed > 0, "{report:?}");
    // The Python caller's asks, when a Python interpreter imports conclib: none failed.
    if report.py_callers > 0 {
        assert!(report.py_asks > 0, "{report:?}");
        assert_eq!(report.py_failed, 0, "{report:?}");
    }
    // Reminder ticks went on across the roll: none lost, none handled twice.
    assert!(report.ticks > 0, "{report:?}");
    assert_eq!(report.ticks_lost, 0, "{report:?}");
    assert_eq!(report.ticks_doubled, 0, "{report:?}");
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        // Warnings of the members to standard error (`RUST_LOG` for more).
        conclib_examples::init_tracing();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let r = match args.first().map(String::as_str) {
            Some("member") => rt.block_on(rolling::member(&args[1..])),
            Some("caller") => rt.block_on(rolling::caller(&args[1..])),
            _ => Err("unknown role".into()),
        };
        if let Err(e) = r {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    conclib_testkit::run(conclib_testkit::tests![
        members_replaced_one_by_one_under_load_fail_no_request
    ]);
}
