use conclib::actor;

#[actor]
struct Machine(bool);

#[actor]
impl Machine {
    // `machine.stop()` is the ref's own method.
    #[handle]
    fn stop(&mut self) {
        self.0 = false;
    }

    // `.timeout(..)` is the request builder's.
    #[handle]
    fn timeout(&mut self, ms: u64) {
        self.0 = ms > 0;
    }

    // `machine.eq(..)` is `PartialEq`'s, in every scope.
    #[handle]
    fn eq(&mut self, other: bool) -> bool {
        self.0 == other
    }
}

fn main() {}
