//! Trees of one actor type (an actor spawns children of its own type from hooks and
//! handlers, with no boxing by the user), and a parent's panic policy for its children.

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::time::Duration;

#[message(response = usize)]
struct CountNodes;

#[message(response = usize)]
struct Grow;

#[message]
struct Boom;

#[actor]
struct Node {
    depth: u32,
}

#[actor]
impl Node {
    /// Spawns one child of its own type in a hook.
    #[on_start]
    async fn start(&mut self, ctx: &mut Context<Self>) -> Result<(), SpawnError> {
        if self.depth > 0 {
            ctx.spawn_child(Node {
                depth: self.depth - 1,
            })
            .await?;
        }
        Ok(())
    }

    /// Spawns another child of its own type in a handler; answers the number of children.
    #[handle]
    async fn grow(&mut self, _: Grow, ctx: &mut Context<Self>) -> usize {
        ctx.build_child(Node { depth: 0 })
            .spawn()
            .await
            .expect("spawn a child node");
        ctx.children().len()
    }

    #[handle]
    async fn count(&mut self, _: CountNodes, ctx: &mut Context<Self>) -> usize {
        let mut total = 1;
        for child in ctx.children() {
            total += child.ask(CountNodes).await.unwrap_or(0);
        }
        total
    }

    #[handle]
    fn boom(&mut self, _: Boom) {
        panic!("boom");
    }
}

#[tokio::test]
async fn a_node_spawns_nodes_from_its_hooks_and_handlers() {
    let system = ActorSystem::new("t");
    let root = system.spawn(Node { depth: 3 }).await.unwrap();
    assert_eq!(root.ask(CountNodes).await.unwrap(), 4);
    assert_eq!(root.ask(Grow).await.unwrap(), 2);
    assert_eq!(root.ask(CountNodes).await.unwrap(), 5);
    assert_eq!(system.actors_of::<Node>().len(), 5);
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A parent whose children are spawned by someone else's code path (its handler on behalf
/// of a caller), with their own builders choosing `Stop`.
#[message(response = ActorRef<Node>)]
struct SpawnStoppingChild;

/// Declares (or takes back) the policy for the supervisor's children at run time.
#[message]
struct Declare(Option<PanicPolicy>);

#[actor]
struct Supervisor;

#[actor]
impl Supervisor {
    #[handle]
    fn declare(&mut self, Declare(policy): Declare, ctx: &mut Context<Self>) {
        ctx.set_children_on_panic(policy);
    }

    #[handle]
    async fn spawn_child(
        &mut self,
        _: SpawnStoppingChild,
        ctx: &mut Context<Self>,
    ) -> ActorRef<Node> {
        ctx.build_child(Node { depth: 0 })
            .on_panic(PanicPolicy::Stop)
            .spawn()
            .await
            .expect("spawn")
    }
}

#[tokio::test]
async fn a_parents_declared_policy_overrides_the_spawners_choice() {
    let system = ActorSystem::new("t");
    let parent = system
        .build(Supervisor)
        .children_on_panic(PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    let child = parent.ask(SpawnStoppingChild).await.unwrap();
    assert!(matches!(child.ask(Boom).await, Err(AskError::Panicked(_))));
    // Resumed (the parent's declaration), not stopped (the spawner's choice).
    assert_eq!(child.ask(CountNodes).await.unwrap(), 1);
    assert!(child.is_alive());

    // Take the declaration back at run time: the running child's own policy applies again.
    parent.tell(Declare(None)).await.unwrap();
    parent.ask(SpawnStoppingChild).await.unwrap(); // the Declare was handled before this
    assert!(matches!(child.ask(Boom).await, Err(AskError::Panicked(_))));
    assert!(matches!(
        child.wait_for_stop().await,
        StopReason::Panicked(_)
    ));

    // And declare one at run time for children that are already running.
    let system2 = ActorSystem::new("t2");
    let parent2 = system2.spawn(Supervisor).await.unwrap();
    let child2 = parent2.ask(SpawnStoppingChild).await.unwrap();
    parent2
        .tell(Declare(Some(PanicPolicy::Resume)))
        .await
        .unwrap();
    parent2.ask(SpawnStoppingChild).await.unwrap();
    assert!(matches!(child2.ask(Boom).await, Err(AskError::Panicked(_))));
    assert_eq!(child2.ask(CountNodes).await.unwrap(), 1);
    drop(parent);
}
