use std::rc::Rc;

use conclib::actor;

#[actor]
struct Holder(u64);

#[actor]
impl Holder {
    #[handle]
    fn hold(&mut self, value: Rc<u64>) {
        self.0 = *value;
    }
}

fn main() {}
