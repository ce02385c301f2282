use conclib::{actor, message};

#[message(response = u64)]
struct Get;

struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn get(&mut self, _msg: Get) -> u64 {
        self.0
    }
}

fn main() {}
