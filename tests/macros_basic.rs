//! Scratch test of the macros.
#![deny(warnings, clippy::pedantic)]
use conclib::{ActorSystem, AskError, Context, actor, message};
use serde::{Deserialize, Serialize};

/// A ping.
#[message(response = Pong, error = String)]
#[derive(Serialize, Deserialize)]
pub struct Ping {
    n: u64,
}

/// A pong.
#[message]
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Pong {
    n: u64,
}

#[message(response = u64, error = AddError)]
struct Add(u64);

#[derive(Debug, PartialEq)]
struct AddError;

#[actor(urn = "example_actor", mailbox = 16)]
struct Example {
    count: u64,
}

#[actor]
impl Example {
    /// Doc.
    #[handle(remote)]
    async fn ping(&mut self, msg: Ping, ctx: &mut Context<Self>) -> Pong {
        let _ = ctx.id();
        Pong { n: msg.n + self.count }
    }

    #[handle]
    fn add(&mut self, msg: Add) -> Result<u64, AddError> {
        if msg.0 == 0 {
            return Err(AddError);
        }
        self.count += msg.0;
        Ok(self.count)
    }

    #[on_start]
    fn started(&mut self) {
        self.count = 1;
    }
}

#[tokio::test]
async fn works() {
    let system = ActorSystem::new("t");
    let a = system.spawn(Example { count: 0 }).await.unwrap();
    assert_eq!(a.ask(Ping { n: 1 }).await.unwrap(), Pong { n: 2 });
    assert_eq!(a.ask(Add(2)).await.unwrap(), 3);
    assert_eq!(a.ask(Add(0)).await, Err(AskError::Handler(AddError)));
    let d = system.lookup("example_actor").unwrap();
    assert_eq!(d.ask(Add(2)).await.unwrap(), 5);
    assert_eq!(<Example as conclib::Actor>::REMOTE[0].name(), "Ping");
}
