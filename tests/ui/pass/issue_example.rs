//! The example of the issue that asked for the macros, as written there.
use conclib::{ActorSystem, Context, actor, message};
use serde::{Deserialize, Serialize};

#[message(response = Pong)] // a request and the type it answers with
#[derive(Serialize, Deserialize)]
struct Ping {
    n: u64,
}

#[message] // a message with no response (tell only)
#[derive(Debug, PartialEq)]
struct Pong {
    n: u64,
}

#[message(response = u64, error = AddError)]
struct Add(u64);

#[derive(Debug, PartialEq)]
struct AddError;

#[actor(urn = "example_actor")] // optional URN constant; mailbox options here too
struct Example {
    count: u64,
}

#[actor] // on the impl block: each #[handle] method is a typed handler
impl Example {
    #[handle]
    async fn ping(&mut self, msg: Ping, ctx: &mut Context<Self>) -> Pong {
        let _ = ctx.id();
        Pong {
            n: msg.n + self.count,
        }
    }

    #[handle]
    fn add(&mut self, msg: Add) -> Result<u64, AddError> {
        // Err goes back to the asker
        self.count = self.count.checked_add(msg.0).ok_or(AddError)?;
        Ok(self.count)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let system = ActorSystem::new("pass");
    let example = system.spawn(Example { count: 0 }).await.unwrap();
    assert_eq!(example.ask(Add(1)).await, Ok(1));
    assert_eq!(example.ask(Ping { n: 1 }).await, Ok(Pong { n: 2 }));
    assert_eq!(
        system
            .lookup("example_actor")
            .unwrap()
            .ask(Add(u64::MAX))
            .await,
        Err(conclib::AskError::Handler(AddError))
    );
}
