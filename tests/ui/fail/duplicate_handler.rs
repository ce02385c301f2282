use conclib::{actor, message};

#[message(response = u64)]
struct Add(u64);

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, msg: Add) -> u64 {
        self.0 += msg.0;
        self.0
    }

    #[handle]
    fn add_again(&mut self, msg: Add) -> u64 {
        self.0 += 2 * msg.0;
        self.0
    }
}

fn main() {}
