//! What conclib's test binaries share: [`run`] for test binaries that play a helper process
//! too, [`recorded`] to read the metrics a test recorded, [`eventually`] to wait for a
//! state seen only by polling, [`freeze`] to stop a process and wait until all of it has
//! stopped, and [`redis_ha`]: Redis Sentinel and Cluster topologies on loopback to fail over
//! on purpose.
//!
//! A test binary that plays a helper process too (a web server for `conclib-apid`, a Redis
//! peer for `conclib-redis`, a process actor for `conclib-process`) is built with
//! `harness = false`: its `main` first checks whether it was started in a helper role (as
//! `procspawn` does), and only then runs its tests through [`run`]. The helper needs no
//! binary target of its own in the library crate, and the tests find it as
//! [`std::env::current_exe`].
//!
//! ```no_run
//! async fn adds() {
//!     assert_eq!(1 + 1, 2);
//! }
//!
//! fn main() {
//!     if std::env::var_os("MY_HELPER_ROLE").is_some() {
//!         return; // ... play the helper, then exit.
//!     }
//!     conclib_testkit::run(conclib_testkit::tests![adds]);
//! }
//! ```

pub mod redis_ha;
pub mod stalls;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// One test: starts its future.
pub type Test = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The `(name, test)` list [`run`] takes, from the names of `async fn`s.
#[macro_export]
macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        &[$((
            ::std::stringify!($test),
            (|| ::std::boxed::Box::pin($test())) as $crate::Test,
        )),*]
    };
}

/// How long one test may take before it counts as failed.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the tests whose names contain one of the command line's words (all without any),
/// one after another, each on a 2-worker runtime within a minute; prints a line per test
/// and `N passed, M failed` as libtest does; exits 1 if any failed.
pub fn run(tests: &[(&str, Test)]) -> ! {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the tests");
    let (mut passed, mut failed) = (0, 0);
    for &(name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let outcome = runtime.block_on(async {
            tokio::spawn(async move { tokio::time::timeout(TEST_TIMEOUT, test()).await }).await
        });
        match outcome {
            Ok(Ok(())) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Ok(Err(_)) => {
                println!("test {name} ... FAILED (timed out)");
                failed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED ({e})");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}

/// A recorded metric's name and labels (`"key=value"`, sorted).
pub type MetricKey = (String, Vec<String>);

/// What `snapshotter` holds (since its last read: counters and histograms are drained), by
/// name and sorted labels.
pub fn recorded(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> std::collections::HashMap<MetricKey, metrics_util::debugging::DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

/// What [`eventually`]'s probe answers: `true`/`false`, or `Some(value)`/`None`.
pub trait Outcome {
    /// What `eventually` returns once the probe succeeds.
    type Value;
    /// The value if the wait is over.
    fn done(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Waits for a state seen only by polling (Redis keys, counters, a process's death): runs
/// `probe` every 5 ms until it answers `true` or `Some(value)` (returned), and panics with
/// "timed out waiting for {what}" after `within`. For anything that can be awaited as an
/// event, await the event instead.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let polls = AtomicU32::new(0);
/// let n = conclib_testkit::eventually(Duration::from_secs(5), "the third poll", || async {
///     let n = polls.fetch_add(1, Ordering::Relaxed) + 1;
///     (n == 3).then_some(n)
/// })
/// .await;
/// assert_eq!(n, 3);
/// # }
/// ```
pub async fn eventually<O, F, Fut>(within: Duration, what: &str, mut probe: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await.done() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops process `pid` (SIGSTOP) and returns once every thread of it is stopped, as
/// `/proc/<pid>/task/*/stat` shows; panics if that takes over 10 s, or if `pid` is not a
/// process this test may signal.
///
/// `kill(2)` returns before the process stops: one of its threads takes the signal and then
/// stops the others, and on a loaded machine they run on for milliseconds meanwhile (a
/// "frozen" proxy answered an ask 7 ms after `kill` had returned). A test that asserts what
/// a frozen process does not do freezes it with this.
pub async fn freeze(pid: u32) {
    let raw = i32::try_from(pid).expect("a pid fits an i32");
    // SAFETY: kill(2) has no memory effects; the caller names a process of its own.
    assert_eq!(
        unsafe { libc::kill(raw, libc::SIGSTOP) },
        0,
        "SIGSTOP to {pid}"
    );
    eventually(Duration::from_secs(10), "the process to stop", || async {
        all_threads_stopped(pid)
    })
    .await;
}

/// Whether every thread of `pid` is stopped (state `T` or `t` in its `stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|thread| {
        // A thread that ended meanwhile runs no more either.
        std::fs::read_to_string(thread.path().join("stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

/// The fuzz targets' inputs replayed on stable (`fuzz/README.md`): each crate's tests run
/// every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, and the seeds the
/// crate makes, through the target's function.
pub mod fuzz_corpus {
    use std::path::{Path, PathBuf};

    /// The repository's `fuzz/` directory, from a crate's manifest directory
    /// (`env!("CARGO_MANIFEST_DIR")` of a crate at the workspace root).
    #[must_use]
    pub fn dir(manifest_dir: &str) -> PathBuf {
        Path::new(manifest_dir).join("../fuzz")
    }

    /// Runs `check` on every file of the target's corpus and regressions, then on `seeds`;
    /// panics if the corpus is empty (a target replayed against nothing proves nothing).
    pub fn replay(fuzz: &Path, target: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8])) {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                eprintln!("{}", path.display());
                check(&std::fs::read(&path).expect("a readable file"));
                n += 1;
            }
        }
        assert!(n > 0, "fuzz/corpus/{target}/ is empty");
        for seed in seeds {
            check(seed);
        }
    }

    /// Writes `seeds` into `fuzz/corpus/<target>/seed-N`.
    pub fn write_seeds(fuzz: &Path, target: &str, seeds: &[Vec<u8>]) {
        let dir = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("written");
        }
    }
}
