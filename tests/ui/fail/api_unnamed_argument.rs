use conclib::actor;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add_pair(&mut self, (a, b): (u64, u64)) -> u64 {
        self.0 += a + b;
        self.0
    }
}

fn main() {}
