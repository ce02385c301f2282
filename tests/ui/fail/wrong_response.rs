use conclib::{actor, message};

#[message(response = u64)]
struct Ping;

#[message]
struct Pong;

#[actor]
struct Example;

#[actor]
impl Example {
    #[handle]
    fn ping(&mut self, _msg: Ping) -> Pong {
        Pong
    }
}

fn main() {}
