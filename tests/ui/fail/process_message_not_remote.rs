use conclib::{actor, message};
use conclib_process::ProcessRef;

#[message(response = u64)]
#[derive(serde::Serialize, serde::Deserialize)]
struct Get;

#[message]
#[derive(serde::Serialize, serde::Deserialize)]
struct Reset;

#[actor]
#[derive(serde::Serialize, serde::Deserialize)]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn get(&mut self, _msg: Get) -> u64 {
        self.0
    }

    // Handled, but only for senders in the actor's own process.
    #[handle]
    fn reset(&mut self, _msg: Reset) {
        self.0 = 0;
    }
}

async fn reset(counter: ProcessRef<Counter>) {
    counter.ask(Get).await.unwrap();
    counter.ask(Reset).await.unwrap();
}

fn main() {
    let _ = reset;
}
