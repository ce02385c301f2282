//! The macros name the runtime by the name the user's `Cargo.toml` gives it: a crate that
//! depends on `my_conclib = { package = "conclib", .. }` (and not on `conclib`) builds and runs.
//! Also `crate = path`, for when the runtime is reached through a re-export.

use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"[package]
name = "renamed-user"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
my_conclib = { package = "conclib", path = "ROOT" }
tokio = { version = "1", features = ["rt", "macros"] }

# Not part of any enclosing workspace.
[workspace]
"#;

const MAIN: &str = r#"
use my_conclib::{ActorSystem, AskError, Context, actor, message};

#[message(response = u64, error = String)]
struct Add(u64);

#[message(response = Vec<T>)]
struct Drain<T>(std::marker::PhantomData<T>);

#[actor(urn = "renamed")]
struct Counter(u64);

#[actor]
impl Counter {
    #[handle]
    async fn add(&mut self, Add(n): Add, ctx: &mut Context<Self>) -> Result<u64, String> {
        let _ = ctx.id();
        if n == 0 {
            return Err("zero".to_owned());
        }
        self.0 += n;
        Ok(self.0)
    }

    #[on_start]
    fn start(&mut self) {
        self.0 = 1;
    }
}

#[actor]
struct Store<T>(Vec<T>);

#[actor]
impl<T: Send + 'static> Store<T> {
    #[handle]
    fn drain(&mut self, _: Drain<T>) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let system = ActorSystem::new("renamed");
    let counter = system.spawn(Counter(0)).await.unwrap();
    assert_eq!(counter.ask(Add(2)).await, Ok(3));
    assert_eq!(counter.ask(Add(0)).await, Err(AskError::Handler("zero".to_owned())));
    assert_eq!(system.lookup("renamed").unwrap().ask(Add(1)).await, Ok(4));
    let store = system.spawn(Store(vec![1_u8])).await.unwrap();
    assert_eq!(store.ask(Drain(std::marker::PhantomData)).await, Ok(vec![1]));
    println!("renamed dependency ok");
}
"#;

/// Writes the crate next to the test's scratch space and runs it with cargo.
#[test]
fn renamed_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("macros-rename");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let root_str = root.to_str().expect("a UTF-8 path").replace('\\', "/");
    std::fs::write(dir.join("Cargo.toml"), MANIFEST.replace("ROOT", &root_str)).unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN).unwrap();
    // The workspace's versions, all downloaded already: no network needed.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("renamed dependency ok"),
        "the crate with a renamed dependency failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

mod reexported {
    //! The runtime reached through a path of the user's: `crate = ...`.
    pub use conclib as runtime;
}

mod with_crate_option {
    use crate::reexported::runtime::{ActorSystem, Context};

    #[crate::reexported::runtime::message(crate = crate::reexported::runtime, response = u64)]
    pub struct Get;

    #[crate::reexported::runtime::actor(crate = crate::reexported::runtime)]
    pub struct Holder(pub u64);

    #[crate::reexported::runtime::actor(crate = "crate::reexported::runtime")]
    impl Holder {
        #[handle]
        fn get(&mut self, _: Get, ctx: &mut Context<Self>) -> u64 {
            let _ = ctx.id();
            self.0
        }
    }

    #[tokio::test]
    async fn crate_option_names_the_runtime() {
        let system = ActorSystem::new("crate-option");
        let holder = system.spawn(Holder(9)).await.unwrap();
        assert_eq!(holder.ask(Get).await, Ok(9));
    }
}
