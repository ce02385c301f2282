use conclib::{actor, message};
use serde::{Deserialize, Serialize};

#[derive(Debug)]
struct Refused;

#[message(response = u64, error = Refused)]
#[derive(Serialize, Deserialize)]
struct Withdraw(u64);

#[actor]
struct Account(u64);

#[actor]
impl Account {
    #[handle(remote)]
    fn withdraw(&mut self, Withdraw(n): Withdraw) -> Result<u64, Refused> {
        self.0 = self.0.checked_sub(n).ok_or(Refused)?;
        Ok(self.0)
    }
}

fn main() {}
