use conclib::{Context, actor};

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn get(&mut self, ctx: &mut Context<Self>) -> u64 {
        let _ = ctx;
        self.0
    }
}

fn main() {}
