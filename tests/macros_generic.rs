//! `#[message]` and `#[actor]` on generic types and enums.

use std::fmt::Debug;
use std::time::Duration;

use conclib::{ActorSystem, AskError, Context, Message, actor, message};

/// Stores one item.
#[message]
struct Put<T>(T);

/// Takes every item stored so far.
#[message(response = Vec<T>)]
struct TakeAll<T>(std::marker::PhantomData<T>);

impl<T> TakeAll<T> {
    fn new() -> Self {
        TakeAll(std::marker::PhantomData)
    }
}

/// A fixed-size batch; its size is part of its wire name.
#[message(response = usize)]
struct Batch<const N: usize>([u8; N]);

/// How many items are stored.
#[message(response = usize)]
struct Len;

/// Arithmetic as an enum message; fails on overflow.
#[message(response = i64, error = String)]
#[derive(Debug)]
enum Op {
    Add(i64),
    Sub(i64),
}

/// A generic actor: a store of `T`.
#[actor(urn = "store")]
struct Store<T> {
    items: Vec<T>,
}

#[actor]
impl<T> Store<T>
where
    T: Debug + Send + 'static,
{
    #[handle]
    fn put(&mut self, Put(item): Put<T>) {
        self.items.push(item);
    }

    #[handle]
    async fn take_all(&mut self, _: TakeAll<T>, ctx: &mut Context<Self>) -> Vec<T> {
        let _ = ctx.id();
        std::mem::take(&mut self.items)
    }

    #[handle]
    fn len(&mut self, _: Len) -> usize {
        self.items.len()
    }

    #[handle]
    fn batch(&mut self, Batch(bytes): Batch<4>) -> usize {
        bytes.len()
    }
}

/// A calculator that answers an enum message.
#[actor]
#[derive(Default)]
enum Calculator {
    #[default]
    Idle,
    Total(i64),
}

#[actor]
impl Calculator {
    #[handle]
    fn op(&mut self, op: Op) -> Result<i64, String> {
        let total = match self {
            Calculator::Idle => 0,
            Calculator::Total(n) => *n,
        };
        let total = match op {
            Op::Add(n) => total.checked_add(n),
            Op::Sub(n) => total.checked_sub(n),
        }
        .ok_or_else(|| format!("{op:?} overflows"))?;
        *self = Calculator::Total(total);
        Ok(total)
    }
}

#[tokio::test]
async fn generic_actor_handles_generic_messages() {
    let system = ActorSystem::new("generic");
    let store = system
        .spawn(Store::<String> { items: Vec::new() })
        .await
        .unwrap();
    store.tell(Put("a".to_owned())).await.unwrap();
    store.tell(Put("b".to_owned())).await.unwrap();
    assert_eq!(store.ask(Len).await, Ok(2));
    assert_eq!(store.ask(Batch([1, 2, 3, 4])).await, Ok(4));
    assert_eq!(
        store.ask(TakeAll::new()).await,
        Ok(vec!["a".to_owned(), "b".to_owned()])
    );

    // Through a dynamic ref, only the instantiation it handles is accepted.
    let by_name = system.lookup("store").unwrap();
    by_name.tell(Put("c".to_owned())).await.unwrap();
    assert_eq!(by_name.ask(Len).await, Ok(1));
    assert!(matches!(
        by_name.ask(Put(1_u32)).await,
        Err(AskError::UnknownMessage { .. })
    ));
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn enum_messages_and_enum_actors() {
    let system = ActorSystem::new("generic");
    let calculator = system.spawn(Calculator::default()).await.unwrap();
    assert_eq!(calculator.ask(Op::Add(5)).await, Ok(5));
    assert_eq!(calculator.ask(Op::Sub(7)).await, Ok(-2));
    assert_eq!(
        calculator.ask(Op::Sub(i64::MAX)).await,
        Err(AskError::Handler(
            "Sub(9223372036854775807) overflows".to_owned()
        ))
    );
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[test]
fn generic_messages_are_named_per_instantiation() {
    assert_eq!(Put::<u32>::name(), "Put<u32>");
    assert_eq!(Put::<bool>::name(), "Put<bool>");
    // Computed once, then the same string.
    assert!(std::ptr::eq(Put::<u32>::name(), Put::<u32>::name()));
    assert_eq!(TakeAll::<u8>::name(), "TakeAll<u8>");
    assert_eq!(Batch::<4>::name(), "Batch<4>");
    assert_eq!(Op::name(), "Op");
}
