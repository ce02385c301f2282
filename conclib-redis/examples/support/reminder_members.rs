//! The `reminders` example's member systems in processes of their own: the child's side (a
//! system serving `b:{id}` with a poller, telling the driver what it handled) and the
//! driver's handle on a child (shared by the example through `#[path]`).
//!
//! The protocol, one line each way: the child prints `READY` once it serves, then
//! `HANDLED n` whenever its count of handled ticks changed (every 20 ms at most); on `RESET`
//! it forgets the lags recorded so far, on `REPORT` it prints `REPORT last_ms lag,lag,...`
//! (the wall time of the last tick it handled, and each tick's lag in ms); when its stdin
//! closes it shuts down and exits.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The driver's handle on one member process: killed (by pid) and reaped on
/// [`kill`](Self::kill), killed on drop if not.
pub struct ChildMember {
    child: tokio::process::Child,
    pub pid: i32,
    stdin: tokio::process::ChildStdin,
    /// Ticks handled, as the child last said.
    pub handled: Arc<AtomicU64>,
    reports: tokio::sync::mpsc::Receiver<String>,
}

impl ChildMember {
    /// Starts `exe member URL NS NAME` and waits (30 s at most) for its `READY`.
    pub async fn start(url: &str, ns: &str, name: &str) -> Result<ChildMember, BoxError> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["member", url, ns, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = i32::try_from(child.id().ok_or("no pid")?)?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        if ready.as_deref() != Some("READY") {
            return Err(format!("member {name} did not start: {ready:?}").into());
        }
        let handled = Arc::new(AtomicU64::new(0));
        let (tx, reports) = tokio::sync::mpsc::channel(4);
        let count = handled.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix("HANDLED ").and_then(|n| n.parse().ok()) {
                    count.store(n, Ordering::Relaxed);
                } else if let Some(report) = line.strip_prefix("REPORT ") {
                    let _ = tx.send(report.to_owned()).await;
                }
            }
        });
        Ok(ChildMember {
            child,
            pid,
            stdin,
            handled,
            reports,
        })
    }

    /// Tells the child to forget the lags recorded so far.
    pub async fn reset(&mut self) -> Result<(), BoxError> {
        self.stdin.write_all(b"RESET\n").await?;
        Ok(())
    }

    /// The wall time (ms) of the last tick the child handled, and every lag it recorded.
    pub async fn report(&mut self) -> Result<(u64, Vec<u64>), BoxError> {
        self.stdin.write_all(b"REPORT\n").await?;
        let line = tokio::time::timeout(Duration::from_secs(30), self.reports.recv())
            .await?
            .ok_or("the member exited")?;
        let (last, lags) = line.split_once(' ').unwrap_or((&line, ""));
        let lags = lags
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()?;
        Ok((last.parse()?, lags))
    }

    /// SIGKILLs the child by its pid and reaps it (10 s at most).
    pub async fn kill(mut self) {
        // SAFETY: kill(2) on a child not reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The child's side: serves until its stdin closes, printing its count of handled ticks
/// and answering `RESET` and `REPORT` (see the module docs). `handled`, `last_ms` and
/// `lags` are what the system's actors record.
pub async fn serve_driver(
    handled: impl Fn() -> u64 + Send + 'static,
    last_ms: impl Fn() -> u64 + Send + 'static,
    lags: impl Fn(bool) -> Vec<u64> + Send + 'static,
) {
    println!("READY");
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(line.trim().to_owned()).is_err() {
                return;
            }
            line.clear();
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut said = 0;
    loop {
        tokio::select! {
            command = commands.recv() => match command.as_deref() {
                None => return,
                Some("RESET") => { lags(true); }
                Some("REPORT") => {
                    let all: Vec<String> = lags(false).iter().map(u64::to_string).collect();
                    println!("HANDLED {}", handled());
                    println!("REPORT {} {}", last_ms(), all.join(","));
                }
                Some(_) => {}
            },
            _ = tick.tick() => {
                let now = handled();
                if now != said {
                    said = now;
                    println!("HANDLED {now}");
                }
            }
        }
    }
}
