use conclib::{StopReason, actor};

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[on_stop]
    fn stop(&mut self, reason: StopReason) {
        let _ = reason;
    }
}

fn main() {}
