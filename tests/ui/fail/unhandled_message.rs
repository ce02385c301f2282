use conclib::{ActorRef, actor, message};

#[message(response = u64)]
struct Get;

#[message]
struct Reset;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn get(&mut self, _msg: Get) -> u64 {
        self.0
    }
}

async fn reset(counter: ActorRef<Counter>) {
    counter.ask(Reset).await.unwrap();
}

fn main() {
    let _ = reset;
}
