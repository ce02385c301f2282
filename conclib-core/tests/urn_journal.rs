//! The system's URN journal: what a proxy follows instead of looking at every actor.

use conclib_core::{Actor, ActorSystem, URN_JOURNAL_CAPACITY, UrnChanges};

struct Idle;
impl Actor for Idle {}

#[tokio::test]
async fn a_reader_follows_changes_and_is_told_when_it_fell_too_far_behind() {
    let system = ActorSystem::new("journal");
    let start = *system.urn_changes().borrow();
    let a = system.build(Idle).urn("a").spawn().await.unwrap();
    let _b = system.build(Idle).urn("b").spawn().await.unwrap();
    a.stop();
    a.wait_for_stop().await;
    let UrnChanges::Since { changes, next } = system.urn_changes_since(start) else {
        panic!("the journal reaches back to the start");
    };
    let seen: Vec<(&str, bool)> = changes.iter().map(|(u, t)| (u.as_str(), *t)).collect();
    assert_eq!(seen, [("a", true), ("b", true), ("a", false)]);
    assert_eq!(next, *system.urn_changes().borrow());
    // Nothing new since: empty.
    assert_eq!(
        system.urn_changes_since(next),
        UrnChanges::Since {
            changes: Vec::new(),
            next
        }
    );
    // More changes than the journal keeps: a reader at `next` is told to look afresh,
    // and the journal keeps its capacity's worth.
    for i in 0..URN_JOURNAL_CAPACITY / 2 + 1 {
        let r = system
            .build(Idle)
            .urn(format!("x:{i}"))
            .spawn()
            .await
            .unwrap();
        r.stop();
        r.wait_for_stop().await;
    }
    let now = *system.urn_changes().borrow();
    assert_eq!(
        system.urn_changes_since(next),
        UrnChanges::Lost { next: now }
    );
    let UrnChanges::Since { changes, .. } =
        system.urn_changes_since(now - URN_JOURNAL_CAPACITY as u64)
    else {
        panic!("the last capacity's worth of changes is kept");
    };
    assert_eq!(changes.len(), URN_JOURNAL_CAPACITY);
    // A position from the future is not trusted either.
    assert!(matches!(
        system.urn_changes_since(now + 5),
        UrnChanges::Lost { .. }
    ));
}
