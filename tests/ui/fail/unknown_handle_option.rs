use conclib::{actor, message};

#[message]
struct Reset;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(public)]
    fn reset(&mut self, _msg: Reset) {
        self.0 = 0;
    }
}

fn main() {}
