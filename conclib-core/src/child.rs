//! Child processes that die with this process (Unix).
//!
//! A child started by [`bind_to_parent`] and [`spawn_bound`] is sent `SIGKILL` when this
//! process dies, however it dies (even `SIGKILL`), so a crashed service leaves no orphan
//! server behind. The Redis daemon and the API daemon start their children this way.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use conclib_core::child::{bind_to_parent, spawn_bound};
//!
//! let mut command = std::process::Command::new("sleep");
//! command.arg("60");
//! bind_to_parent(&mut command, false);
//! let mut child = spawn_bound(move || command.spawn(), |mut orphan| {
//!     let _ = orphan.kill();
//!     let _ = orphan.wait();
//! })
//! .await?;
//! child.kill()?;
//! child.wait()?;
//! # Ok(()) }
//! ```
//!
//! Why a dedicated thread: `PR_SET_PDEATHSIG` fires when the *thread* that forked the child
//! exits, not when the process does. Async runtimes run code on pool threads that are retired
//! when idle, which would kill a healthy child. So every bound child is forked by one
//! long-lived thread, started on first use and kept for the life of the process: the signal
//! then means "the process died".

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::sync::oneshot;

/// Arranges for the child `command` starts to be killed when this process dies (on Linux
/// and Android; elsewhere this is only the process group), and to fail to start with
/// `ESRCH` if this process already died. With `own_group`, the child also leads a new
/// process group, so that a whole tree can be signalled with `kill(-pid, ..)`.
///
/// The binding holds only for children forked by [`spawn_bound`]. For a
/// `tokio::process::Command`, pass `command.as_std_mut()`.
pub fn bind_to_parent(command: &mut std::process::Command, own_group: bool) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls; the io::Error constructors used do not allocate.
    unsafe {
        command.pre_exec(move || {
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // The parent may have died between fork and prctl: the signal would never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type Job = Box<dyn FnOnce() + Send>;

fn spawner() -> io::Result<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("conclib-spawner".into())
                .spawn(move || rx.into_iter().for_each(|job| job()));
            match started {
                Ok(_) => Some(tx),
                Err(error) => {
                    tracing::error!(%error, "cannot start the conclib spawner thread");
                    None
                }
            }
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("the conclib spawner thread could not be started"))
}

/// Runs `spawn` (which forks the child, e.g. `move || command.spawn()`) on the one
/// long-lived spawner thread, so that [`bind_to_parent`]'s death signal means "this process
/// died". If the caller stops waiting before the child is started, `abandoned` gets it to
/// clean up. A panic in `spawn` is returned as an error.
///
/// # Errors
/// What `spawn` returns, or an error if the spawner thread cannot be started.
pub async fn spawn_bound<T, F, A>(spawn: F, abandoned: A) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
    A: FnOnce(T) + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(spawn)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(io::Error::other(format!("spawning panicked: {what}")))
        });
        if let Err(Ok(orphan)) = reply.send(result) {
            abandoned(orphan);
        }
    });
    spawner()?
        .send(job)
        .map_err(|_| io::Error::other("the conclib spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the conclib spawner thread dropped the request"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_child_runs_and_panics_become_errors() {
        let mut command = std::process::Command::new("true");
        bind_to_parent(&mut command, true);
        let mut child = spawn_bound(move || command.spawn(), |_| {}).await.unwrap();
        assert!(child.wait().unwrap().success());

        let error = spawn_bound::<(), _, _>(|| panic!("boom"), |_| {})
            .await
            .unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");

        let missing = std::process::Command::new("/nonexistent/program");
        let error = spawn_bound(
            move || {
                let mut c = missing;
                c.spawn()
            },
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
