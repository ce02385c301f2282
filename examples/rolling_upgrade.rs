//! A rolling upgrade under load with real processes (`examples/rolling.rs` says what is
//! counted): 3 member processes serving `acct:{id}` accounts held in memory, caller
//! processes asking and telling them without pause, each member replaced in turn by a
//! successor of build 2 (an optional field added to a message, and a new message) after a
//! drain on SIGTERM. One line:
//!
//! `RESULT asks=.. failed_asks=.. timeouts=.. decode_errors=.. p99_ratio_roll_to_steady=..
//! drain_ms_max=.. pause_p99_ms=.. state_mismatches=.. tells_lost=.. tells_repeated=..
//! .. py_asks=.. py_failed=.. py_timeouts=.. ticks=.. ticks_lost=.. ticks_doubled=..`
//!
//! `cargo run -p conclib-examples --example rolling_upgrade -- --urns 200 --callers 3
//! --py-callers 3 --in-flight 32 --reminders 20 --steady-ms 5000` (Python callers: the
//! Python client's interpreter, `python/venv.sh`, else none; `--rate N`: each caller
//! process sends N calls a second, its asks timed from when they were due, where the
//! default `0` sends without pause, as many as the machine answers; `--between-ms N`: the
//! driver waits N ms after each replacement before the next, within the roll (default 0);
//! `--new-message-from N`: build 2's callers ask `Audit` once N members of build 2 serve
//! (default 1, at most 3);
//! `--stop shutdown`: members shut down without draining,
//! for comparison; `--phases`: the roll's asks by the step of a replacement they started in,
//! on standard error). Every process it starts is killed by PID if it
//! overstays; `examples/tests/rolling_upgrade.rs` is its short form under `cargo test`.

use std::time::Duration;

use conclib_examples::BoxError;
use conclib_examples::rolling::{self, Options};

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Warnings of every process to standard error (`RUST_LOG` for more).
    conclib_examples::init_tracing();
    match args.get(1).map(String::as_str) {
        Some("member") => return rt.block_on(rolling::member(&args[2..])),
        Some("caller") => return rt.block_on(rolling::caller(&args[2..])),
        _ => {}
    }
    let flag = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let options = Options {
        program: std::env::current_exe()?,
        args: Vec::new(),
        env: Vec::new(),
        members: 3,
        urns: flag("--urns", "200").parse()?,
        callers: flag("--callers", "3").parse()?,
        in_flight: flag("--in-flight", "32").parse()?,
        rate: flag("--rate", "0").parse()?,
        python_callers: flag("--py-callers", "3").parse()?,
        reminders: flag("--reminders", "20").parse()?,
        ask_timeout: Duration::from_millis(flag("--timeout-ms", "5000").parse()?),
        steady: Duration::from_millis(flag("--steady-ms", "5000").parse()?),
        between: Duration::from_millis(flag("--between-ms", "0").parse()?),
        new_message_from: flag("--new-message-from", "1").parse()?,
        drain: flag("--stop", "drain") != "shutdown",
        phases: args.iter().any(|a| a == "--phases"),
    };
    let report = rt.block_on(rolling::run(&options))?;
    if !report.errors.is_empty() {
        eprintln!("errors: {:?}", report.errors);
    }
    println!("{}", report.line());
    Ok(())
}
