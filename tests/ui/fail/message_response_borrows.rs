use conclib::message;

#[message(response = &str)]
struct Name;

#[message(response = Vec<&'static str>, error = Option<&[u8]>)]
struct Parts;

fn main() {}
