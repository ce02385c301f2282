use conclib::actor;

struct Report {
    total: u64,
}

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn summary(&mut self) -> Report {
        Report { total: self.0 }
    }
}

fn main() {}
