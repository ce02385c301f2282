use conclib::actor;

#[actor(urn = counter)]
struct Counter(u64);

fn main() {}
