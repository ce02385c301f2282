use conclib::message;

#[message(response = u64)]
fn get() -> u64 {
    0
}

fn main() {}
