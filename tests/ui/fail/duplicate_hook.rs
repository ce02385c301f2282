use conclib::actor;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[on_start]
    fn start(&mut self) {
        self.0 = 1;
    }

    #[on_start]
    #[handle]
    fn also_start(&mut self) {
        self.0 = 2;
    }
}

fn main() {}
