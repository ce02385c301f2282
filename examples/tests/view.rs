//! The live view in a real headless Chromium, while the demo's actors run: the page shows
//! the demo's system and every actor URN it serves, and its figures change between two
//! reads. A screenshot is left in the test's temp dir for a person to look at.
//!
//! Needs Debian's `chromium` (`cargo xtask test` installs it), or `CONCLIB_CHROMIUM` naming another
//! Chromium or Chrome executable.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CONCLIB_CHROMIUM") {
        return path.into();
    }
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "no Chromium found: install Debian's `chromium` package (`cargo xtask test` does), or set \
         CONCLIB_CHROMIUM to a Chromium or Chrome executable"
    );
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`) and
/// returns its stdout. Its page scripts run for 3 s of virtual time first.
fn run_chromium(url: &str, profile: &Path, args: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--window-size=1280,560",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            // SAFETY: signalling a child we started, by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("chromium did not finish within 60 s");
        });
    let status = child.wait().unwrap();
    assert!(status.success(), "chromium failed: {status}");
    out
}

/// The demo process: killed by PID if the test fails before it exits.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(DEMO)
            .args(["--requests", "200", "--web", "2", "--hold", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the demo starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line of the demo's output containing `needle` (waits up to 60 s).
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the demo never printed {needle:?}; it printed {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `data-handled` of the row whose `data-urn` is `urn`, in a dumped DOM.
fn handled(dom: &str, urn: &str) -> u64 {
    let marker = format!("data-urn=\"{urn}\" data-handled=\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {urn} in the page:\n{dom}"))
        + marker.len();
    dom[at..]
        .split('"')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no handled count for {urn}"))
}

#[test]
fn the_live_view_shows_every_system_and_actor_and_updates() {
    let dir = std::env::temp_dir().join(format!("conclib-view-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut demo = Demo::start();
    let url = demo
        .line_with("live view: ")
        .split("live view: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let metrics_url = demo
        .line_with("metrics: ")
        .split("metrics: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    // "  actor system  NAME serving URN, URN through the proxy"
    let serving = demo.line_with(" through the proxy");
    let system = serving.split_whitespace().nth(2).unwrap().to_owned();
    let urns: Vec<String> = serving
        .split(" serving ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" through the proxy")
        .split(", ")
        .map(str::to_owned)
        .collect();
    assert!(urns.contains(&"counter:hits".to_owned()), "{urns:?}");
    // The demo's traffic is over and it holds, with a trickle of requests.
    demo.line_with("holding for");

    let first = run_chromium(&url, &dir.join("profile-1"), &["--dump-dom"]);
    assert!(
        first.contains(&format!("data-system=\"{system}\"")),
        "the page does not show system {system}:\n{first}"
    );
    for urn in &urns {
        assert!(
            first.contains(&format!("data-urn=\"{urn}\"")),
            "the page does not show {urn}:\n{first}"
        );
    }
    // (The snapshot read may predate the demo's traffic: proxies publish every second.)
    let before = handled(&first, "counter:hits");

    // The trickle goes on; the next page read shows a larger count.
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let dom = run_chromium(&url, &dir.join("profile-2"), &["--dump-dom"]);
        if handled(&dom, "counter:hits") > before {
            break dom;
        }
        assert!(
            Instant::now() < deadline,
            "the page's figures did not change within 60 s"
        );
    };
    assert!(second.contains(&format!("data-system=\"{system}\"")));

    let screenshot = dir.join("live-view.png");
    run_chromium(
        &url,
        &dir.join("profile-3"),
        &[&format!("--screenshot={}", screenshot.display())],
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
    println!(
        "screenshot: {} (removed when the test passes)",
        screenshot.display()
    );

    // The demo's metrics endpoint names the same actors.
    let metrics = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let response = reqwest::Client::new()
                .get(&metrics_url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.text().await.unwrap()
        });
    assert!(
        metrics.contains("conclib_actor_messages_handled_total")
            && metrics.contains("urn=\"counter:hits\""),
        "{metrics}"
    );

    // Ctrl-C ends the hold; the demo shuts everything down cleanly.
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(demo.child.id() as i32, libc::SIGINT) };
    demo.line_with("demo OK");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // Chromium's profiles and the screenshot (kept when the test fails, to look at).
    let _ = std::fs::remove_dir_all(&dir);
}
