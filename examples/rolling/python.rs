//! Python callers in the roll: `callers.py` run by the Python client's interpreter (found as
//! the failover scenario finds it: `CONCLIB_PYTHON`, else `target/python-venv`), asking the
//! same accounts as the Rust callers. Without an interpreter that imports `conclib`, the
//! run goes on without them and says so (`py_callers=0`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BoxError;

/// What a Python caller process saw.
#[derive(Debug, Default)]
pub(super) struct PySeen {
    /// Asks sent, failed (any error), timed out.
    pub(super) asks: u64,
    pub(super) failed: u64,
    pub(super) timeouts: u64,
    /// Asks answered, per account number.
    pub(super) answered: BTreeMap<u64, u64>,
    /// Errors by kind.
    pub(super) errors: BTreeMap<String, u64>,
}

/// A Python caller process, killed by PID and reaped on drop, its lines read as they come.
pub(super) struct PyCaller {
    child: tokio::process::Child,
    seen: tokio::task::JoinHandle<Result<PySeen, String>>,
}

impl PyCaller {
    /// Starts a Python caller process once connected: `in_flight` asks at a time over
    /// `acct:0..urns`, `rate` a second (`0`: without pause); `None` without an interpreter
    /// (said on standard error).
    pub(super) async fn start(
        url: &str,
        namespace: &str,
        seed: u64,
        urns: u64,
        in_flight: usize,
        rate: u32,
        timeout: Duration,
    ) -> Result<Option<PyCaller>, BoxError> {
        let Some(python) = crate::failover::python::interpreter() else {
            eprintln!("no Python interpreter imports conclib: the roll has no Python callers");
            return Ok(None);
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rolling/callers.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args([
                url.to_owned(),
                namespace.to_owned(),
                seed.to_string(),
                urns.to_string(),
                in_flight.to_string(),
                timeout.as_millis().to_string(),
                rate.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        if ready.as_deref() != Some("READY") {
            return Err(format!("a Python caller did not start: {ready:?}").into());
        }
        let seen = tokio::spawn(async move {
            let mut seen = PySeen::default();
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split(' ').collect();
                match words.as_slice() {
                    ["PYA", u, outcome] => {
                        seen.asks += 1;
                        match *outcome {
                            "ok" => {
                                let u = u.parse().map_err(|_| format!("python said {line:?}"))?;
                                *seen.answered.entry(u).or_default() += 1;
                            }
                            kind => {
                                seen.failed += 1;
                                if kind == "Timeout" {
                                    seen.timeouts += 1;
                                }
                                *seen.errors.entry(format!("python:{kind}")).or_default() += 1;
                            }
                        }
                    }
                    ["DONE"] => return Ok(seen),
                    _ => return Err(format!("python said {line:?}")),
                }
            }
            Err("a Python caller ended without DONE".to_owned())
        });
        Ok(Some(PyCaller { child, seen }))
    }

    /// Closes its stdin (it stops asking, closes its client and says `DONE`), then what it
    /// saw; killed by PID after a bounded wait.
    pub(super) async fn stop(mut self) -> Result<PySeen, BoxError> {
        drop(self.child.stdin.take());
        let seen = tokio::time::timeout(Duration::from_secs(30), &mut self.seen).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        match seen {
            Ok(seen) => Ok(seen??),
            Err(_) => {
                self.seen.abort();
                Err("a Python caller did not finish in time".into())
            }
        }
    }
}
