use conclib::{actor, message};
use std::rc::Rc;

#[message(response = u64)]
struct Get;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    async fn get(&mut self, _msg: Get) -> u64 {
        let shared = Rc::new(self.0);
        tokio::task::yield_now().await;
        *shared
    }
}

fn main() {}
