//! The project's two commands, with the set-up a fresh machine needs:
//!
//! - `cargo xtask demo [ARGS]`: the demo (a release build), after making sure `redis-server`
//!   and Python are there and making the Python environment of its last scene
//!   (`python/venv.sh`: `target/python-venv`, FastAPI and uvicorn from PyPI).
//! - `cargo xtask test [CARGO TEST ARGS]`: every test — the Rust workspace
//!   (`cargo test --workspace --all-features --no-fail-fast`) and the Python client's
//!   (`python/run_tests.sh`) — after installing what is missing: `redis-server` and Chromium
//!   (the live view's browser test), from Debian's packages when this is Debian and we are
//!   root; otherwise one line says what to install, and nothing runs.
//!
//! Ends with the slowest test binaries (where the CI budget goes) and one line
//! `total: N passed, N failed` over every test runner it started.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf();
    let result = match command.as_str() {
        "test" => ensure(&[Need::RedisServer, Need::Chromium, Need::Python])
            .and_then(|()| test(&root, &rest)),
        "demo" => ensure(&[Need::RedisServer, Need::Python]).and_then(|()| demo(&root, &rest)),
        _ => Err(
            "usage: cargo xtask test [cargo test args] | cargo xtask demo [demo args]".to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("cargo xtask {command}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Something the tests or the demo need from the machine.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    RedisServer,
    Chromium,
    Python,
}

impl Need {
    /// Debian's packages that provide it.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Need::RedisServer => &["redis-server"],
            Need::Chromium => &["chromium"],
            Need::Python => &["python3", "python3-venv", "python3-pip"],
        }
    }

    /// Whether the machine has it (or an environment variable names it).
    fn present(self) -> bool {
        match self {
            Need::RedisServer => {
                env_path("CONCLIB_REDIS_SERVER").is_some() || on_path("redis-server").is_some()
            }
            Need::Chromium => {
                env_path("CONCLIB_CHROMIUM").is_some()
                    || ["chromium", "chromium-browser", "google-chrome"]
                        .iter()
                        .any(|name| on_path(name).is_some())
            }
            // The Python tests make a virtual environment: python3 with its venv module.
            Need::Python => Command::new("python3")
                .args(["-c", "import venv, ensurepip"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// What to set instead of installing, if anything.
    fn variable(self) -> Option<&'static str> {
        match self {
            Need::RedisServer => Some("CONCLIB_REDIS_SERVER"),
            Need::Chromium => Some("CONCLIB_CHROMIUM"),
            Need::Python => None,
        }
    }
}

/// An executable named by an environment variable, if it exists.
fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

/// `name` on `PATH` (or in the usual system directories, which a minimal `PATH` may lack).
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Installs what is missing from Debian's packages when it can; otherwise says in one line
/// what to install.
fn ensure(needs: &[Need]) -> Result<(), String> {
    let missing: Vec<Need> = needs.iter().copied().filter(|n| !n.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().flat_map(|n| n.packages()).copied().collect();
    let can_install = on_path("apt-get").is_some() && is_root();
    if !can_install {
        let variables: Vec<&str> = missing.iter().filter_map(|n| n.variable()).collect();
        let instead = if variables.is_empty() {
            String::new()
        } else {
            format!(" (or set {} to its executable)", variables.join(" / "))
        };
        return Err(format!(
            "missing {}: install them (Debian: `sudo apt-get install {}`){instead}, then run this again",
            packages.join(", "),
            packages.join(" "),
        ));
    }
    eprintln!(
        "cargo xtask: installing Debian's packages: {}",
        packages.join(" ")
    );
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages))?;
    match missing.iter().find(|n| !n.present()) {
        Some(still) => Err(format!("{still:?} is still missing after apt-get install")),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn demo(root: &Path, args: &[String]) -> Result<(), String> {
    let mut demo = cargo();
    // The Python environment of the last scene (a Python member, FastAPI workers): made
    // or updated by python/venv.sh; without it the demo runs and skips that scene.
    match Command::new("bash")
        .arg(root.join("python").join("venv.sh"))
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) if out.status.success() => {
            let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            demo.env("CONCLIB_PYTHON", python);
        }
        Ok(out) => eprintln!(
            "cargo xtask demo: python/venv.sh failed ({}): the Python scene is skipped",
            out.status
        ),
        Err(e) => eprintln!(
            "cargo xtask demo: cannot run python/venv.sh ({e}): the Python scene is skipped"
        ),
    }
    run(demo
        .current_dir(root)
        .args([
            "run",
            "--release",
            "--package",
            "conclib-examples",
            "--bin",
            "demo",
            "--",
        ])
        .args(args))
}

/// Passed and failed tests, added up over the runners' summary lines.
#[derive(Default, Debug)]
struct Tally {
    passed: u64,
    failed: u64,
    /// The test binary cargo started last, and when.
    running: Option<(String, Instant)>,
    /// How long each test binary took, start to summary: the CI budget is spent here.
    durations: Vec<(Duration, String)>,
}

impl Tally {
    /// Reads one line of cargo's standard error: `Running tests/x.rs (target/...)` starts a
    /// test binary (its time runs to the summary line that follows, or the next start).
    fn started(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("Running ") else {
            return;
        };
        self.finish();
        let name = rest.split(" (").next().unwrap_or(rest).to_string();
        self.running = Some((name, Instant::now()));
    }

    /// Closes the running binary's time.
    fn finish(&mut self) {
        if let Some((name, at)) = self.running.take() {
            self.durations.push((at.elapsed(), name));
        }
    }

    /// The slowest test binaries, slowest first.
    fn slowest(&mut self, n: usize) -> Vec<(Duration, String)> {
        self.finish();
        let mut all = self.durations.clone();
        all.sort_by_key(|d| std::cmp::Reverse(d.0));
        all.truncate(n);
        all
    }

    /// Reads one line of a runner's output: cargo's `test result: ok. 12 passed; 0 failed; ...`
    /// pytest's `==== 3 failed, 40 passed, 1 skipped in 9.1s ====`, or a plain
    /// `15 passed, 0 failed` (the project's `harness = false` test binaries).
    fn read(&mut self, line: &str) {
        let cargo = line.starts_with("test result:");
        let pytest = line.starts_with('=') && line.contains(" in ") && line.ends_with('=');
        // The project's `harness = false` test binaries (conclib-testkit) end so.
        let plain = line.ends_with(" failed")
            && line.split(", ").count() == 2
            && line.split_whitespace().count() == 4
            && line
                .split_whitespace()
                .next()
                .is_some_and(|n| n.parse::<u64>().is_ok());
        if !cargo && !pytest && !plain {
            return;
        }
        if cargo || plain {
            self.finish();
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == '.')
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if let Ok(n) = pair[0].parse::<u64>() {
                match pair[1] {
                    "passed" => self.passed += n,
                    "failed" | "errors" | "error" => self.failed += n,
                    _ => {}
                }
            }
        }
    }
}

/// Runs `command`, echoing its output while counting its tests and timing each test binary.
///
/// cargo names the binary it starts on standard error (`Running tests/x.rs (...)`) and the
/// binary's summary comes on standard output: both are read, in the order they arrive, so
/// each summary is charged to the binary named last.
fn run_counted(command: &mut Command, tally: &mut Tally) -> Result<bool, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let (lines, received) = mpsc::channel::<(bool, String)>();
    let readers = [
        (
            false,
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        ),
        (true, Box::new(child.stderr.take().expect("piped"))),
    ]
    .map(|(is_err, stream)| {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if lines.send((is_err, line)).is_err() {
                    break;
                }
            }
        })
    });
    drop(lines);
    for (is_err, line) in received {
        if is_err {
            eprintln!("{line}");
            tally.started(line.trim());
        } else {
            println!("{line}");
            tally.read(line.trim());
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {command:?}: {e}"))?;
    Ok(status.success())
}

fn test(root: &Path, args: &[String]) -> Result<(), String> {
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    let rust = run_counted(
        cargo()
            .current_dir(root)
            .args(["test", "--workspace", "--all-features", "--no-fail-fast"])
            .args(args),
        &mut tally,
    )?;
    if !rust {
        failures.push("cargo test");
    }
    // The core's loom models (`--cfg conclib_loom`: loom's atomics in the structures they
    // model; a target directory of their own, the flags differing). Seconds, bounded by
    // the models' size.
    let loom = run_counted(
        cargo()
            .current_dir(root)
            .env("RUSTFLAGS", "--cfg conclib_loom")
            .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
            .args(["test", "-p", "conclib-core", "--lib", "loom_"]),
        &mut tally,
    )?;
    if !loom {
        failures.push("the core's loom models");
    }
    let python = root.join("python").join("run_tests.sh");
    if python.is_file()
        && !run_counted(
            // The slowest Python tests listed too: the CI budget is spent there as well.
            Command::new("bash")
                .arg(&python)
                .arg("--durations=12")
                .current_dir(root),
            &mut tally,
        )?
    {
        failures.push("the Python client's tests");
    }
    println!("slowest test binaries:");
    for (took, name) in tally.slowest(15) {
        println!("  {:>7.1} s  {name}", took.as_secs_f64());
    }
    println!("total: {} passed, {} failed", tally.passed, tally.failed);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failures.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn counts_cargo_and_pytest_summaries() {
        let mut t = Tally::default();
        t.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.read("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        t.read("===== 1 failed, 40 passed, 2 skipped in 9.12s =====");
        t.read("running 12 tests");
        t.read("15 passed, 1 failed");
        t.read("test foo ... ok");
        assert_eq!((t.passed, t.failed), (70, 4));
    }

    #[test]
    fn times_each_binary_from_its_start_to_its_summary() {
        let mut t = Tally::default();
        t.started("Running tests/a.rs (target/debug/deps/a-1)");
        t.read("test result: ok. 1 passed; 0 failed; finished in 0.01s");
        t.started("Compiling x v0.1.0");
        t.started("Running unittests src/lib.rs (target/debug/deps/b-2)");
        let names: Vec<String> = t.slowest(5).into_iter().map(|(_, n)| n).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"tests/a.rs".to_string()));
        assert!(names.contains(&"unittests src/lib.rs".to_string()));
    }
}
