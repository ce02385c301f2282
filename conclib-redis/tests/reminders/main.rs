//! Durable reminders with real processes and a real Redis: members that
//! activate `rem:{id}` actors and poll for due reminders are this test binary started again
//! in a peer role (`peer.rs`); every wait is bounded and every child is killed and reaped by
//! PID.

mod catch_up;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod durability;
mod firing;
mod hostile;
mod peer;
#[path = "../scale_out/peers.rs"]
#[allow(dead_code)]
mod peers;
mod takeover;

use catch_up::*;
use cluster::*;
use durability::*;
use firing::*;
use hostile::*;
use takeover::*;

fn main() {
    if std::env::var_os(peers::ROLE).is_some() {
        peer::peer_main();
    }
    conclib_testkit::run(conclib_testkit::tests![
        reminders_register_cancel_list_and_reject_what_is_invalid,
        reminders_fire_exactly_once_across_three_systems,
        reminders_fire_at_least_once_with_a_system_killed_mid_way,
        a_reminder_registered_by_an_actor_wakes_it_after_passivation_and_after_its_holder_is_killed,
        a_periodic_reminder_missed_while_all_systems_were_down_fires_once,
        a_firer_killed_mid_delivery_is_taken_over_after_its_claim,
        reminders_survive_a_redis_restart_with_aof,
        a_registration_is_ok_only_once_a_replica_holds_it,
        durable_writes_return_within_the_command_timeout_while_replicas_lag,
        the_python_client_sends_the_same_scripts,
        reminders_fire_once_on_a_redis_cluster,
        garbled_records_do_not_stop_their_shard,
        missed_ticks_are_delivered_one_by_one_when_asked,
        a_periodic_reminders_deliverer_killed_is_taken_over_within_the_claim_lease,
        a_periodic_reminder_loses_no_tick_and_repeats_none_across_a_drain,
        a_reminder_on_a_urn_nobody_serves_is_counted_unserved,
    ]);
}
