use conclib::{actor, message};
use serde::{Deserialize, Serialize};

struct Snapshot(u64);

#[message(response = Snapshot, error = String)]
#[derive(Serialize, Deserialize)]
struct Get;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle(remote)]
    fn get(&mut self, _msg: Get) -> Snapshot {
        Snapshot(self.0)
    }
}

fn main() {}
