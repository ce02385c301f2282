//! Talking to the servers from outside: free ports to start them on, `redis-cli` calls
//! bounded in time, and polling against a deadline.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `n` distinct ports of 127.0.0.1 free now, below the kernel's ephemeral range (a port
/// `bind(0)` hands out may be given to an outgoing connection before the server binds it).
pub fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| low > FIRST + 1_000 && low <= 65_536)
        .unwrap_or(32_768);
    let span = low - FIRST;
    let start = std::process::id().wrapping_mul(15_485_863) % span;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..span {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
            if listeners.len() == n {
                break;
            }
        }
    }
    assert_eq!(listeners.len(), n, "no {n} free ports in {FIRST}..{low}");
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// The `redis-cluster://` URL naming the nodes on these ports of 127.0.0.1 (the first as the
/// URL's host, the others as `node=` parameters).
///
/// ```
/// let url = conclib_testkit::redis_ha::cluster_url([7000, 7001, 7002]);
/// assert_eq!(url, "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002");
/// ```
pub fn cluster_url(ports: impl IntoIterator<Item = u16>) -> String {
    let mut url = String::from("redis-cluster://");
    for (i, port) in ports.into_iter().enumerate() {
        if i > 0 {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str("node=");
        }
        url.push_str(&format!("127.0.0.1:{port}"));
    }
    url
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` (2 s at most); its trimmed stdout, or
/// why it failed.
pub fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    cli_within(port, args, Duration::from_secs(2))
}

/// [`cli`], killed after `limit`.
pub(super) fn cli_within(port: u16, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    // A stopped server never answers: redis-cli would wait for ever.
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-cli {args:?} on port {port}: no answer"));
            }
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !stdout.starts_with("ERR") {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli {args:?} on port {port}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Polls `probe` every 20 ms until it gives `Some`; panics after `timeout` with `what` and
/// the last observation.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One field of `INFO` output.
pub(super) fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::to_owned)
    })
}

/// Closes `primary`'s replication links (`CLIENT KILL TYPE replica`) while its replicas are
/// stalled: what it takes from then on reaches no replica. (A stalled replica would
/// otherwise find seconds of writes waiting in its socket's buffers when it resumes, and
/// lose nothing.)
pub(super) fn cut_replication(primary: u16) {
    if let Err(e) = cli(primary, &["CLIENT", "KILL", "TYPE", "replica"]) {
        eprintln!("CLIENT KILL TYPE replica on {primary}: {e}");
    }
}
