//! Scale-out on Redis, with real processes: one URN served by a group of systems
//! (`groups.rs`), and actors activated on demand by URN pattern (`activation.rs`). The member
//! systems are this test binary started again in a peer role (`peers.rs`); every wait is
//! bounded and every child is killed and reaped by PID.

#[macro_use]
#[path = "../common/wire_message.rs"]
mod wire_message;

mod activation;
#[path = "../common/mod.rs"]
mod common;
mod drain;
mod early_kill;
mod failover;
mod failover_load;
mod fast_lane;
mod groups;
mod peers;
mod placement;
mod rebalance;
mod route_hint;
mod versions;

use activation::*;
use drain::*;
use early_kill::*;
use failover::*;
use failover_load::*;
use fast_lane::*;
use groups::*;
use placement::*;
use rebalance::*;
use route_hint::*;
use versions::*;

fn main() {
    if std::env::var_os(peers::ROLE).is_some() {
        peer_main();
    }
    conclib_testkit::run(conclib_testkit::tests![
        a_shared_urn_spreads_over_its_members_and_survives_one_killed,
        a_member_leaves_gracefully_and_a_new_one_takes_a_share,
        eight_clients_racing_activate_a_urn_once,
        a_holder_paused_past_its_lease_never_runs_beside_its_successor,
        a_request_saved_by_a_holder_killed_before_its_acknowledgement_counts_once,
        a_request_read_again_after_its_answer_failed_counts_once,
        a_request_passed_on_is_known_by_its_first_entry,
        a_request_recorded_by_an_earlier_activation_is_known_two_activations_on,
        an_idle_activation_saves_frees_its_urn_and_comes_back,
        a_constructor_that_refuses_answers_unknown_urn,
        joins_that_cannot_be_and_requests_for_other_urns_are_refused,
        a_member_paused_past_its_lease_repeats_at_most_what_it_had_taken,
        a_member_paused_with_tells_queued_starts_none_of_them_once_back,
        a_member_reading_again_as_its_entries_are_claimed_loses_none,
        a_group_whose_last_member_left_leaves_nothing_behind,
        a_groups_stream_is_trimmed_below_what_is_pending,
        sixty_sequential_activations_spread_over_three_members,
        hash_placement_puts_a_urn_on_the_same_member_across_runs,
        prefer_asker_places_on_the_asking_system,
        a_chosen_member_paused_or_killed_loses_no_request,
        a_high_priority_ask_overtakes_a_backlog_of_tells_in_a_groups_stream,
        a_high_priority_ask_overtakes_a_backlog_of_tells_in_a_patterns_stream,
        a_high_priority_tell_to_a_group_without_a_fast_lane_goes_to_its_stream,
        a_killed_holders_queued_requests_are_moved_and_answered,
        a_paused_holders_queued_requests_are_moved_and_it_repeats_none,
        a_member_joining_under_load_takes_its_share_with_rebalancing,
        two_members_joining_at_once_each_take_their_share,
        a_killed_holder_of_200_urns_fails_over_under_load_from_three_clients,
        a_paused_holder_of_200_urns_fails_over_under_load_and_repeats_nothing,
        a_holder_killed_within_a_second_of_activating_fails_over,
        a_holder_on_another_host_killed_within_a_second_of_activating_fails_over,
        a_holder_killed_and_asked_after_ten_leases_fails_over,
        a_member_drained_by_sigterm_under_load_hands_everything_over,
        a_drained_members_urns_are_activated_at_once_and_a_key_left_naming_it_is_answered,
        a_request_passed_on_to_a_drained_holder_goes_to_the_group,
        a_urn_handed_to_a_draining_member_is_answered_during_its_drain,
        a_client_told_who_holds_a_urn_sends_there_not_through_its_stale_route,
        a_client_whose_route_names_a_killed_member_learns_the_new_holders,
        a_message_only_the_new_build_has_is_answered_by_it_or_refused_unsupported_version,
        mid_roll_a_member_of_the_new_build_never_rebalances_onto_the_old,
        mid_roll_a_drain_hands_to_the_new_build_only,
    ]);
}

/// This binary in a peer's role: `member` (groups), `activator` and `client` (activation),
/// `placer` (placement), `versioned` (versions).
fn peer_main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("member") => member(&args[2..]).await,
            Some("activator") => activator(&args[2..]).await,
            Some("client") => client(&args[2..]).await,
            Some("placer") => placer(&args[2..]).await,
            Some("loader") => loader(&args[2..]).await,
            Some("versioned") => versioned(&args[2..]).await,
            _ => 2,
        }
    });
    std::process::exit(code);
}
