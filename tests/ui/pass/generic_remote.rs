//! A generic actor exposes a generated message that carries its type parameter: the impl
//! block's serde bounds are the message's.
use conclib::actor;
use serde::{Serialize, de::DeserializeOwned};

#[actor]
struct Store<T> {
    items: Vec<T>,
}

#[actor]
impl<T> Store<T>
where
    T: Send + Serialize + DeserializeOwned + 'static,
{
    #[handle(remote)]
    pub fn put(&mut self, item: T) -> usize {
        self.items.push(item);
        self.items.len()
    }
}

fn main() {
    let _ = Store::<String> { items: Vec::new() };
    assert!(<Store<String> as conclib::Actor>::accepts(
        std::any::TypeId::of::<Put<String>>()
    ));
}
