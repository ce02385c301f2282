use conclib::actor;

#[actor(mailbox = 0)]
struct Counter(u64);

#[actor(mailbox = "big")]
struct Other(u64);

fn main() {}
