use conclib::{actor, message};

#[derive(Debug)]
struct AddError;

#[message(response = u64, error = AddError)]
struct Add(u64);

#[actor]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, msg: Add) -> Result<u64, String> {
        self.0 += msg.0;
        Ok(self.0)
    }
}

fn main() {}
