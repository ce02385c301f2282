use conclib::{Context, StopReason, actor};

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[on_start]
    fn start(&mut self, ctx: &mut Context<Self>, initial: u64) {
        let _ = ctx;
        self.0 = initial;
    }

    #[on_stop]
    fn stop(&mut self, _reason: &StopReason) -> u64 {
        self.0
    }
}

fn main() {}
