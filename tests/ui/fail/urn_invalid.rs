use conclib::actor;

#[actor(urn = "shop counter")]
struct Counter(u64);

fn main() {}
