//! A client whose cached route names a member that no longer holds a URN (it moved: a
//! drain, a rebalance) learns the holder from the first answer passed on: the member the
//! route named passes the ask on, the holder answers naming itself (the reply's route
//! hint), and the client's next asks go straight to the holder instead of through the
//! member it cached (two trips through Redis each, for as long as the route is cached).

use std::time::Duration;

use fred::prelude::*;

use crate::activation::Total;
use crate::common::{config, plain_client};
use crate::drain::{client_keeping_routes, sixty_four_answered};
use crate::placement::start_placers;

/// How many entries were ever added to `stream`.
async fn entries_added(redis: &Client, stream: &str) -> i64 {
    let info: Vec<Value> = redis
        .custom(
            fred::cmd!("XINFO"),
            vec![Value::from("STREAM"), Value::from(stream)],
        )
        .await
        .unwrap();
    info.chunks(2)
        .find(|kv| kv[0].as_str().as_deref() == Some("entries-added"))
        .and_then(|kv| kv[1].as_i64())
        .expect("XINFO STREAM lists entries-added")
}

/// Three members of a pattern; a client that caches its routes for a minute, its route to
/// a URN naming a member that does not hold it. 64 asks at once go through that member,
/// which passes each on to the holder; the next 64 go straight to the holder: not one more
/// entry in the other member's stream.
pub(crate) async fn a_client_told_who_holds_a_urn_sends_there_not_through_its_stale_route() {
    let config = config("route-hint");
    let lease_ms = conclib_redis::ProxyConfig::new("").lease_ttl.as_millis() as u64;
    let peers = start_placers(&config, lease_ms, "spread").await;
    let deadline = Duration::from_secs(5);
    let client = client_keeping_routes(&config, deadline).await;
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    let urn = "acct:hinted";
    let key = format!("{ns}:urn:{urn}");

    // Activated on one member; the client's route made to name another one.
    assert!(client.ask(urn, Total).await.is_ok());
    let holder: String = redis.get(&key).await.unwrap();
    let stale = ["s1", "s2", "s3"]
        .into_iter()
        .find(|s| *s != holder)
        .unwrap();
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    let _: () = redis.set(&key, stale, None, None, false).await.unwrap();
    assert_eq!(client.resolve(urn).await.unwrap().as_deref(), Some(stale));
    let _: () = redis
        .set(
            &key,
            holder.as_str(),
            Some(Expiration::PX(ttl.max(1_000))),
            None,
            false,
        )
        .await
        .unwrap();

    let stale_stream = format!("{ns}:sys:{stale}:req");
    let holder_stream = format!("{ns}:sys:{holder}:req");
    let before = entries_added(&redis, &stale_stream).await;
    sixty_four_answered(&client, &[urn], deadline).await;
    let passed_on = entries_added(&redis, &stale_stream).await - before;
    assert!(
        (1..=64).contains(&passed_on),
        "the first asks went through {stale}: {passed_on}"
    );

    let (stale_before, holder_before) = (
        entries_added(&redis, &stale_stream).await,
        entries_added(&redis, &holder_stream).await,
    );
    sixty_four_answered(&client, &[urn], deadline).await;
    assert_eq!(
        entries_added(&redis, &stale_stream).await - stale_before,
        0,
        "once told, none went through {stale}"
    );
    assert!(
        entries_added(&redis, &holder_stream).await - holder_before >= 64,
        "each went to {holder}"
    );
    println!(
        "RESULT test=route_hint holder={holder} stale={stale} passed_on_first={passed_on} passed_on_after=0"
    );
    drop(client);
    for p in peers {
        p.stop().await;
    }
}

/// The same after a holder's death: a client caching its routes for a minute sends 64 asks
/// at once to the URNs of a member killed (SIGKILL) moments before. They wait in its stream
/// until the takeover moves them to the members given its URNs, each answered naming its
/// new holder; the next 64 go straight there: not one more entry in the dead member's
/// stream.
pub(crate) async fn a_client_whose_route_names_a_killed_member_learns_the_new_holders() {
    let config = config("route-hint-kill");
    let mut peers = start_placers(&config, 1_500, "spread").await;
    let deadline = Duration::from_secs(10);
    let client = client_keeping_routes(&config, deadline).await;
    let redis = plain_client(&config.url).await;
    let ns = &config.namespace;
    let urns: Vec<String> = (0..30).map(|i| format!("acct:k{i}")).collect();
    for urn in &urns {
        assert!(client.ask(urn.as_str(), Total).await.is_ok());
    }
    // The victim: `s1`, with the URNs it holds (placement spreads them over the three).
    let mut theirs = Vec::new();
    for urn in &urns {
        let holder: String = redis.get(format!("{ns}:urn:{urn}")).await.unwrap();
        if holder == "s1" {
            theirs.push(urn.as_str());
        }
    }
    assert!(!theirs.is_empty(), "s1 holds some of {urns:?}");
    // Their routes cached as naming `s1` (the first asks went through the group's stream).
    for urn in &theirs {
        assert_eq!(client.resolve(urn).await.unwrap().as_deref(), Some("s1"));
    }
    peers.remove(0).kill().await;

    let dead_stream = format!("{ns}:sys:s1:req");
    let before = entries_added(&redis, &dead_stream).await;
    sixty_four_answered(&client, &theirs, deadline).await;
    let went_there = entries_added(&redis, &dead_stream).await - before;
    assert_eq!(
        went_there, 64,
        "the first asks went to the dead member's stream"
    );
    let before = entries_added(&redis, &dead_stream).await;
    sixty_four_answered(&client, &theirs, deadline).await;
    assert_eq!(
        entries_added(&redis, &dead_stream).await - before,
        0,
        "once told, none went to the dead member's stream"
    );
    println!(
        "RESULT test=route_hint_after_kill urns={} first_to_dead=64 after_to_dead=0",
        theirs.len()
    );
    drop(client);
    for p in peers {
        p.stop().await;
    }
}
