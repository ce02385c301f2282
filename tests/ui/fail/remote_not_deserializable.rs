use conclib::{actor, message};

#[message(response = u64, error = String)]
struct Get;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn get(&mut self, _msg: Get) -> u64 {
        self.0
    }
}

fn main() {}
