use conclib::message;

#[message(respons = u64)]
struct Get;

fn main() {}
