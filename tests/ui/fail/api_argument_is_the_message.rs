use conclib::{Context, actor, message};

#[message(response = u64)]
struct Add(u64);

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, msg: Add, ctx: &mut Context<Self>, times: u64) -> u64 {
        let _ = ctx;
        self.0 += msg.0 * times;
        self.0
    }
}

fn main() {}
