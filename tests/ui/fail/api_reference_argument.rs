use conclib::actor;

#[actor]
struct Greeter(String);

#[actor]
impl Greeter {
    #[handle]
    fn greet(&mut self, name: &str) -> String {
        format!("{} {name}", self.0)
    }
}

fn main() {}
