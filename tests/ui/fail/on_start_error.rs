use conclib::actor;

struct NotAnError;

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[on_start]
    fn start(&mut self) -> Result<(), NotAnError> {
        Err(NotAnError)
    }
}

fn main() {}
