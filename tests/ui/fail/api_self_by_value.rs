use conclib::actor;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(self, n: u64) -> u64 {
        self.0 + n
    }
}

fn main() {}
