use conclib::{actor, message};

#[message]
struct Reset;

#[actor]
struct Counter(u64);

#[actor(urn = "counter")]
impl Counter {
    #[handle]
    fn reset(&mut self, _msg: Reset) {
        self.0 = 0;
    }
}

fn main() {}
