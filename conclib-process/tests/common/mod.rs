//! What the process-actor test binaries share: the worker actor they run in child
//! processes, and helpers (their `main` must call `conclib_process::init` before anything
//! else, then run the tests with `conclib_testkit::run`).
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use conclib::{actor, message};
use serde::{Deserialize, Serialize};

#[message(response = u64)]
#[derive(Serialize, Deserialize)]
pub struct Add(pub u64);

#[message(response = u64, error = String)]
#[derive(Serialize, Deserialize)]
pub struct Take(pub u64);

#[message]
#[derive(Serialize, Deserialize)]
pub struct Boom;

#[message(response = u64)]
#[derive(Serialize, Deserialize)]
pub struct SleepMs(pub u64);

#[message]
#[derive(Serialize, Deserialize)]
pub struct Exit(pub i32);

#[message(response = u32)]
#[derive(Serialize, Deserialize)]
pub struct Pid;

/// Asks the parent's actor `urn` for `Add(n)` and answers what it said.
#[message(response = u64, error = String)]
#[derive(Serialize, Deserialize)]
pub struct AskParent {
    pub urn: String,
    pub n: u64,
}

/// Answers the `traceparent` its request came with (empty: none).
#[message(response = String)]
#[derive(Serialize, Deserialize)]
pub struct SeenTrace;

/// Asks the parent's actor `urn` for [`SeenTrace`] and answers what that actor saw.
#[message(response = String, error = String)]
#[derive(Serialize, Deserialize)]
pub struct AskParentTrace {
    pub urn: String,
}

/// Writes bytes that are no frame to the link, as a stray write to its socket would.
#[message]
#[derive(Serialize, Deserialize)]
pub struct CorruptLink;

/// Keeps the CPU busy for this many milliseconds (a handler that never awaits).
#[message(response = u64)]
#[derive(Serialize, Deserialize)]
pub struct Burn(pub u64);

/// Keeps the CPU busy for this many milliseconds, then answers the process's id (which
/// member of a pool ran it).
#[message(response = u32)]
#[derive(Serialize, Deserialize)]
pub struct BurnThenPid(pub u64);

/// Answers the length of what it carries (a string: encoded in one copy, even unoptimized).
#[message(response = u64)]
#[derive(Serialize, Deserialize)]
pub struct Blob(pub String);

/// Answers a string of this many bytes.
#[message(response = String)]
#[derive(Serialize, Deserialize)]
pub struct Big(pub usize);

/// Spins forever: a handler stuck in a CPU loop.
#[message]
#[derive(Serialize, Deserialize)]
pub struct Spin;

/// Allocates (and touches) memory until the process cannot.
#[message]
#[derive(Serialize, Deserialize)]
pub struct Hog;

#[actor]
#[derive(Serialize, Deserialize)]
pub struct Worker {
    pub total: u64,
}

#[actor]
impl Worker {
    #[handle(remote)]
    pub fn add(&mut self, Add(n): Add) -> u64 {
        self.total += n;
        self.total
    }

    #[handle(remote)]
    pub fn take(&mut self, Take(n): Take) -> Result<u64, String> {
        if n > self.total {
            return Err(format!("only {} left", self.total));
        }
        self.total -= n;
        Ok(self.total)
    }

    #[handle(remote)]
    pub fn boom(&mut self, _: Boom) {
        panic!("boom in the child");
    }

    #[handle(remote)]
    pub async fn sleep(&mut self, SleepMs(ms): SleepMs) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    #[handle(remote)]
    pub fn exit(&mut self, Exit(code): Exit) {
        std::process::exit(code);
    }

    #[handle(remote)]
    pub fn process_id(&mut self, _: Pid) -> u32 {
        std::process::id()
    }

    #[handle(remote)]
    pub async fn ask_parent(&mut self, AskParent { urn, n }: AskParent) -> Result<u64, String> {
        let parent = conclib_process::parent().ok_or("not in a process actor")?;
        parent.tell(&urn, Add(100)).map_err(|e| e.to_string())?;
        parent
            .ask(&urn, Add(n), Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())
    }

    #[handle(remote)]
    pub async fn ask_parent_trace(
        &mut self,
        AskParentTrace { urn }: AskParentTrace,
    ) -> Result<String, String> {
        let parent = conclib_process::parent().ok_or("not in a process actor")?;
        parent
            .ask(&urn, SeenTrace, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())
    }

    #[handle(remote)]
    pub fn corrupt_link(&mut self, _: CorruptLink) {
        // `init` took the variable out of the environment, not out of the process's
        // original environment block.
        let environ = std::fs::read("/proc/self/environ").unwrap();
        let fd = environ
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"CONCLIB_PROCESS_FD="))
            .and_then(|v| std::str::from_utf8(v).ok()?.split(',').next()?.parse().ok())
            .expect("the link's descriptor");
        // A length of 3, then a tag no frame has.
        let garbage = [0u8, 0, 0, 3, 0xee, 1, 2];
        // SAFETY: writing a buffer of ours to a descriptor this process holds.
        let written = unsafe { libc::write(fd, garbage.as_ptr().cast(), garbage.len()) };
        assert_eq!(written, garbage.len() as isize);
    }

    /// The method-call form: the arguments become the generated message `Scale`.
    #[handle(remote)]
    pub fn scale(&mut self, factor: u64, offset: u64) -> u64 {
        self.total = self.total * factor + offset;
        self.total
    }

    #[handle(remote)]
    pub fn shout(&mut self, text: String) {
        println!("out: {text}");
        eprintln!("err: {text}");
    }

    #[handle(remote)]
    pub fn reset(&mut self) {
        self.total = 0;
    }

    #[handle(remote)]
    pub fn withdraw(&mut self, n: u64) -> Result<u64, String> {
        self.total = self.total.checked_sub(n).ok_or("overdrawn")?;
        Ok(self.total)
    }

    #[handle(remote)]
    pub async fn nap(&mut self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[handle(remote)]
    pub fn burn(&mut self, Burn(ms): Burn) -> u64 {
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        ms
    }

    #[handle(remote)]
    pub fn burn_then_pid(&mut self, BurnThenPid(ms): BurnThenPid) -> u32 {
        self.burn(Burn(ms));
        std::process::id()
    }

    #[handle(remote)]
    pub fn blob(&mut self, Blob(bytes): Blob) -> u64 {
        bytes.len() as u64
    }

    #[handle(remote)]
    pub fn big(&mut self, Big(n): Big) -> String {
        "x".repeat(n)
    }

    #[handle(remote)]
    pub fn spin(&mut self, _: Spin) {
        loop {
            std::hint::spin_loop();
        }
    }

    #[handle(remote)]
    pub fn hog(&mut self, _: Hog) {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            kept.push(vec![1u8; 32 * 1024 * 1024]);
        }
    }
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends `SIGKILL` to a child of this process.
pub fn sigkill(pid: u32) {
    // SAFETY: the pid of a child of this process, not reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// The lines of the children's output that reached this process's `tracing`, as
/// `<level> <actor> <pid> <message>`; and a wake-up for each new one.
pub static CHILD_LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static CHILD_LINE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A `tracing` subscriber that keeps the events of target `conclib_process::child`.
pub struct ChildLines;

impl tracing::Subscriber for ChildLines {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "conclib_process::child"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {value:?}"));
            }
            fn record_str(&mut self, _: &tracing::field::Field, value: &str) {
                self.0.push(' ');
                self.0.push_str(value);
            }
        }
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        CHILD_LINES.lock().unwrap().push(fields.0);
        CHILD_LINE.notify_waiters();
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Waits (at most 10 s) until a line of the children's output contains all of `parts`.
pub async fn child_line(parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let notified = CHILD_LINE.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(line) = CHILD_LINES
            .lock()
            .unwrap()
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.clone();
        }
        assert!(
            tokio::time::timeout_at(deadline, notified).await.is_ok(),
            "no child output line with {parts:?}; got {:?}",
            CHILD_LINES.lock().unwrap()
        );
    }
}

/// In a process actor's process (checked before `init`): the trace fields the actor's
/// `handle` spans record, printed to stderr as one line
/// `handle span trace_id=<id> parent_span_id=<id>` each, so they reach the parent's
/// `tracing` as lines of the child's output.
pub fn child_tracing() {
    if conclib_process::is_process_actor() {
        tracing::subscriber::set_global_default(HandleSpans(Default::default())).unwrap();
    }
}

/// The fields recorded so far of the span being handled (the runner records `trace_id`, then
/// `parent_span_id`: the line is printed at the last).
struct HandleSpans(std::sync::Mutex<String>);

impl tracing::Subscriber for HandleSpans {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.is_span() && meta.name() == "handle"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {field}={value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!(" {field}={value}"));
            }
        }
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        let mut line = self.0.lock().unwrap();
        line.push_str(&fields.0);
        if fields.0.contains("parent_span_id=") {
            eprintln!("handle span{}", std::mem::take(&mut *line));
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// How many lines of the children's output so far contain all of `parts`.
pub fn child_lines_with(parts: &[&str]) -> usize {
    CHILD_LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}
