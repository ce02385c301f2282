use conclib::actor;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, n: u64) -> u64 {
        self.0 += n;
        self.0
    }

    // Generates a second message named `Add`.
    #[handle(name = "Add")]
    fn plus(&mut self, n: u64, times: u64) -> u64 {
        self.0 += n * times;
        self.0
    }
}

fn main() {}
