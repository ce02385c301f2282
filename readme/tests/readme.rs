//! Runs every Rust block of the README (see `src/lib.rs` for how they are wired), and checks
//! that the README's `Cargo.toml` block lists the dependencies this crate uses.

include!(concat!(env!("OUT_DIR"), "/readme_blocks.rs"));

/// Runs a README `main` on a thread of its own (it builds its own runtime), and fails the
/// test with its error or panic.
async fn run_main(main: fn() -> Result<(), Box<dyn std::error::Error>>) {
    let thread = std::thread::spawn(move || main().map_err(|e| e.to_string()));
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("the README's main failed: {e}"),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("{e}"),
    }
}

/// `(name, features)` of each dependency line of a `[dependencies]` table.
fn dependencies(toml: &str) -> Vec<(String, String)> {
    let mut in_dependencies = false;
    let mut deps = Vec::new();
    for line in toml.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if let (true, Some((name, value))) = (in_dependencies, line.split_once('=')) {
            let features = value
                .split_once("features")
                .map_or("", |(_, f)| f.split(']').next().unwrap_or(""));
            deps.push((name.trim().to_owned(), features.trim().to_owned()));
        }
    }
    deps.sort();
    deps
}

/// The README's "Add it to your project" block names the crates and features this crate
/// builds the blocks with.
async fn cargo_toml_block() {
    let readme = dependencies(include_str!(concat!(env!("OUT_DIR"), "/readme_cargo.toml")));
    let ours = dependencies(include_str!("../Cargo.toml"));
    assert!(
        !readme.is_empty(),
        "the README's toml block has no [dependencies]"
    );
    assert_eq!(
        readme, ours,
        "README's Cargo.toml block vs readme/Cargo.toml"
    );
}

fn main() {
    // Started as a process actor (a README block spawned one): the README's own `main`
    // runs the child, and never returns.
    if conclib::process::is_process_actor() {
        child_role();
        unreachable!("conclib::process::init returns only outside a process actor");
    }
    let mut tests: Vec<(&str, conclib_testkit::Test)> = TESTS.to_vec();
    tests.push(("cargo_toml_block", || Box::pin(cargo_toml_block())));
    conclib_testkit::run(&tests);
}
