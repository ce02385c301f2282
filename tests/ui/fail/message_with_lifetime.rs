use conclib::message;

#[message]
struct Log<'a> {
    line: &'a str,
}

fn main() {}
