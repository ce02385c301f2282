//! A message that cannot fail can be exposed to other processes.
use conclib::{actor, message};
use serde::{Deserialize, Serialize};

#[message(response = u64)]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn add(&mut self, Add(n): Add) -> u64 {
        self.0 += n;
        self.0
    }
}

fn main() {
    use conclib::Actor;
    assert_eq!(Counter::REMOTE.len(), 1);
    assert_eq!(Counter::REMOTE[0].name(), "Add");
}
