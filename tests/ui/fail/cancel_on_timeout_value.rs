use conclib::actor;

#[actor(cancel_on_timeout = true)]
struct Backend(u64);

#[actor(cancel_on_timeout, cancel_on_timeout)]
struct Twice(u64);

fn main() {}
