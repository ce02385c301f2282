//! Durable handlers on Redis, with real processes: a workflow's steps journaled in its
//! URN's fenced state, replayed by the next activation after a member is killed or frozen
//! (`crash.rs`); versions and replays in one process (`versions.rs`); executions suspended
//! in a sleep or a promise, woken by reminders across passivation and a kill (`wakes.rs`). The members are this
//! test binary started again in a peer role; every wait is bounded and every child is
//! killed and reaped by PID.

#[macro_use]
#[path = "../common/wire_message.rs"]
mod wire_message;

#[path = "../common/mod.rs"]
mod common;
mod crash;
mod flow;
#[path = "../scale_out/peers.rs"]
#[allow(dead_code)]
mod peers;
mod versions;
mod wakes;

use crash::*;
use versions::*;
use wakes::*;

fn main() {
    if std::env::var_os(peers::ROLE).is_some() {
        peer_main();
    }
    conclib_testkit::run(conclib_testkit::tests![
        a_step_cut_between_side_effect_and_record_runs_again_once,
        a_fenced_out_holder_cannot_append,
        one_key_from_64_callers_across_a_kill_runs_once,
        a_sleep_and_a_promise_survive_a_killed_holder,
        versions_replay_and_unsupported_ones_stop,
        a_suspended_sleep_and_promise_are_woken_by_reminders_across_passivation_and_a_kill,
    ]);
}

fn peer_main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("member") => flow::member(&args[2..]).await,
            Some("woken") => flow::woken_member(&args[2..]).await,
            _ => 2,
        }
    });
    std::process::exit(code);
}
