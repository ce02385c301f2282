use conclib::actor;

#[actor(urn = "counter", capacity = 16)]
struct Counter(u64);

fn main() {}
