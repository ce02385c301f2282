use conclib::actor;

#[actor]
struct Files(u64);

#[actor]
impl Files {
    #[handle]
    fn open(&mut self, path: String) -> std::io::Result<u64> {
        let _ = path;
        Ok(self.0)
    }
}

fn main() {}
