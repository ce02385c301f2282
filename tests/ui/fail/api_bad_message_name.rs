use conclib::actor;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(name = "add item")]
    fn add(&mut self, n: u64) -> u64 {
        self.0 += n;
        self.0
    }
}

fn main() {}
