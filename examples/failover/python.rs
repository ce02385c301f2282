//! Python callers in the fault load: `callers.py` run by the Python client's interpreter
//! (`CONCLIB_PYTHON`, else the test command's venv, `target/python-venv`), its lines read
//! into the tally. Without an interpreter that imports `conclib`, the run goes on without
//! them and says so (`python_callers=0`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::CALL_TIMEOUT;
use super::tally::{Overrun, Tally};
use crate::BoxError;

/// The first number of the Python callers' tells (the Rust callers' count from 1).
const FIRST_TELL: u64 = 1 << 40;

/// The interpreter to run the callers with, if one imports `conclib` (the rolling
/// upgrade's Python callers too).
pub(crate) fn interpreter() -> Option<PathBuf> {
    let python = std::env::var_os("CONCLIB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python")
        });
    let imports = std::process::Command::new(&python)
        .args(["-c", "import conclib"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    imports.then_some(python)
}

/// The callers' process, killed by PID and reaped on drop.
pub(super) struct PythonCallers {
    child: tokio::process::Child,
}

impl PythonCallers {
    /// Starts `callers` Python callers on `url` at the durability named `level` (as the
    /// members': `replicas` or `primary`), once they are connected; `None` without an
    /// interpreter.
    pub(super) async fn start(
        url: &str,
        callers: usize,
        level: &str,
        tally: &Arc<Tally>,
    ) -> Result<Option<PythonCallers>, BoxError> {
        let Some(python) = interpreter() else {
            eprintln!("no Python interpreter imports conclib: the load has no Python callers");
            return Ok(None);
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("failover/callers.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args([url, &callers.to_string(), &FIRST_TELL.to_string(), level])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        if ready.as_deref() != Some("READY") {
            return Err(format!("the Python callers did not start: {ready:?}").into());
        }
        tally
            .python_callers
            .store(callers as u64, Ordering::Relaxed);
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["PYASKED", urn, activation, count, at] => {
                        tally.py_asks_ok.fetch_add(1, Ordering::Relaxed);
                        tally.answered(
                            urn,
                            activation.parse().unwrap_or(0),
                            count.parse().unwrap_or(0),
                            at.parse().unwrap_or(0),
                        );
                    }
                    ["PYTOLD", n] => {
                        if let Ok(n) = n.parse() {
                            tally.py_accepted.lock().unwrap().insert(n);
                            tally
                                .py_accepted_at
                                .lock()
                                .unwrap()
                                .insert(n, super::tally::unix_ms());
                        }
                    }
                    ["PYFAILED", kind, count] => {
                        let count: u64 = count.parse().unwrap_or(0);
                        let typed = matches!(
                            *kind,
                            "Unavailable" | "NotReplicated" | "Timeout" | "HandlerError"
                        );
                        if !typed {
                            eprintln!("python: {count} untyped errors {kind}");
                            tally.untyped.fetch_add(count, Ordering::Relaxed);
                        }
                        *tally
                            .errors
                            .lock()
                            .unwrap()
                            .entry(format!("python {kind}"))
                            .or_default() += count;
                    }
                    [
                        "PYOVERRUN",
                        took,
                        call,
                        outcome,
                        stalled,
                        cpu,
                        began_ms,
                        counted,
                    ] => {
                        let counted = *counted == "1";
                        eprintln!(
                            "python overrun: {call} {outcome} {took} s (its loop stalled {stalled} s, using {cpu} s of CPU; counted {counted})"
                        );
                        if counted {
                            tally.py_overruns.fetch_add(1, Ordering::Relaxed);
                        }
                        let secs = |s: &str| Duration::from_secs_f64(s.parse().unwrap_or(0.0));
                        tally.overran(Overrun {
                            who: "python",
                            call: (*call).to_owned(),
                            outcome: (*outcome).to_owned(),
                            began_ms: began_ms.parse().unwrap_or(0),
                            took: secs(took),
                            bound: CALL_TIMEOUT,
                            stalled: secs(stalled),
                            counted,
                        });
                    }
                    _ => {}
                }
            }
        });
        Ok(Some(PythonCallers { child }))
    }

    /// Closes its stdin (it stops calling and closes its client), then a kill by PID after
    /// a bounded wait.
    pub(super) async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(8), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}
