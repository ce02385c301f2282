//! Forking children from one long-lived thread.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not when the process does. Tokio may run a spawn on a blocking-pool
//! thread that is retired a few seconds later, which would kill a healthy
//! server for no reason. So every child is forked by a dedicated
//! `conclib-apid-spawner` thread, started on first use and kept for the life
//! of the process: the death signal then means "the parent process died".

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct SpawnRequest {
    command: Command,
    /// The runtime the child's pipes and reaper are registered with.
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Puts the child in its own process group, arranges for it to be killed
/// when the parent process dies, and gives up if the parent already died.
pub(crate) fn prepare(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls; `io::Error::last_os_error` and
    // `from_raw_os_error` do not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
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
            // The parent may have died between fork and prctl: the death
            // signal would then never come, so stop here.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

fn spawner() -> io::Result<&'static mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            let started = std::thread::Builder::new()
                .name("conclib-apid-spawner".into())
                .spawn(move || serve(rx));
            match started {
                Ok(_) => Some(tx),
                Err(error) => {
                    tracing::error!(%error, "cannot start the conclib-apid spawner thread");
                    None
                }
            }
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("the conclib-apid spawner thread could not be started"))
}

fn serve(requests: mpsc::Receiver<SpawnRequest>) {
    for SpawnRequest {
        mut command,
        runtime,
        reply,
    } in requests
    {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _entered = runtime.enter();
            command.spawn()
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(io::Error::other(format!(
                "spawning panicked (does the Tokio runtime have I/O enabled?): {what}"
            )))
        });
        if let Err(Ok(mut orphan)) = reply.send(result) {
            // The caller gave up while we were forking: leave nothing behind.
            if let Some(pid) = orphan.id() {
                // SAFETY: plain system call; the child leads its own group.
                unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            }
            let _ = orphan.start_kill();
        }
    }
}

/// Spawns `command` on the spawner thread, registered with `runtime`.
pub(crate) async fn spawn(command: Command, runtime: Handle) -> io::Result<Child> {
    let (reply, answer) = oneshot::channel();
    spawner()?
        .send(SpawnRequest {
            command,
            runtime,
            reply,
        })
        .map_err(|_| io::Error::other("the conclib-apid spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the conclib-apid spawner thread dropped the request"))?
}
