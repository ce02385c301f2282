// A generated message whose handler is not `#[handle(remote)]`, sent to a process actor, a pool
// of them or a remote handle: the first error says to mark the handler (not to derive serde
// on a struct the user never wrote).
use conclib::actor;
use conclib::redis::ProxyClient;
use conclib_process::{ProcessPool, ProcessRef};

#[actor]
#[derive(serde::Serialize, serde::Deserialize)]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn get(&mut self) -> u64 {
        self.0
    }

    // Handled, but only for senders in the actor's own process.
    #[handle]
    fn reset(&mut self) {
        self.0 = 0;
    }
}

async fn process(counter: ProcessRef<Counter>) {
    counter.get().await.unwrap();
    counter.reset().await.unwrap();
}

async fn process_ask(counter: ProcessRef<Counter>) {
    counter.ask(Reset).await.unwrap();
}

async fn pool(counters: ProcessPool<Counter>) {
    counters.ask(Reset).await.unwrap();
}

async fn remote(client: ProxyClient) {
    let counter = client.actor::<Counter>("counter");
    counter.reset().await.unwrap();
}

fn main() {
    let _ = (process, process_ask, pool, remote);
}
