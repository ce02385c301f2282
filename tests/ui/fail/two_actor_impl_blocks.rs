use conclib::{actor, message};

#[message(response = u64)]
struct Add(u64);

#[message(response = u64)]
struct Get;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, msg: Add) -> u64 {
        self.0 += msg.0;
        self.0
    }
}

#[actor]
impl Counter {
    #[handle]
    fn get(&mut self, _msg: Get) -> u64 {
        self.0
    }
}

fn main() {}
