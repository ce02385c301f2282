// A `Recipient` is not a ref to an actor type: the generated API is not there.
use conclib::{ActorSystem, actor};

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, n: u64) -> u64 {
        self.0 += n;
        self.0
    }
}

async fn run() {
    let system = ActorSystem::new("ui");
    let counter = system.spawn(Counter(0)).await.unwrap();
    let recipient = counter.recipient::<Add>();
    let _ = recipient.add(1);
}

fn main() {
    let _ = run();
}
