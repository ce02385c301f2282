//! A tiny HTTP server for conclib-apid's own tests (std only): the test binary itself,
//! started again with `CONCLIB_APID_TESTSERVER` set (see `main` in `apid.rs`).
//!
//! ```text
//! <test binary> --port N [--mode healthy|fail|exit|no-listen|redirect|mute|fail-then-mute]
//!     [--delay-ms N] [--ignore-term] [--workers N] [--say TEXT]...
//! ```
//!
//! - `healthy` (default): `GET /healthz` answers 200 (after `--delay-ms`,
//!   waited before listening);
//! - `fail`: `GET /healthz` answers 500;
//! - `exit`: prints a line to stderr and exits with code 3;
//! - `no-listen`: never listens, sleeps forever;
//! - `redirect`: `GET /healthz` answers 302 to `/` (which answers 200);
//! - `mute`: listens and takes connections, never answers;
//! - `fail-then-mute`: the first connection is answered as in `fail`, no later one is.
//!
//! `GET /` answers a greeting, `GET /pid` the server's pid, `GET /workers`
//! the worker pids, space-separated. `--workers N` forks N copies of this
//! program with `--worker` (the role's variable is inherited), which sleep forever in the server's process
//! group; their pids are also printed to stdout as `worker-pid: N`.
//! `--ignore-term` ignores `SIGTERM`. `--say TEXT` prints TEXT to stdout.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(PartialEq)]
enum Mode {
    Healthy,
    Fail,
    Exit,
    NoListen,
    Redirect,
    Mute,
    FailThenMute,
}

struct Options {
    port: u16,
    mode: Mode,
    delay: Duration,
    ignore_term: bool,
    workers: usize,
    say: Vec<String>,
    worker: bool,
}

fn parse() -> Options {
    let mut options = Options {
        port: 0,
        mode: Mode::Healthy,
        delay: Duration::ZERO,
        ignore_term: false,
        workers: 0,
        say: Vec::new(),
        worker: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--port" => options.port = value().parse().unwrap_or_else(|_| usage("bad port")),
            "--mode" => {
                options.mode = match value().as_str() {
                    "healthy" => Mode::Healthy,
                    "fail" => Mode::Fail,
                    "exit" => Mode::Exit,
                    "no-listen" => Mode::NoListen,
                    "redirect" => Mode::Redirect,
                    "mute" => Mode::Mute,
                    "fail-then-mute" => Mode::FailThenMute,
                    other => usage(&format!("unknown mode {other}")),
                }
            }
            "--delay-ms" => {
                let ms = value().parse().unwrap_or_else(|_| usage("bad delay"));
                options.delay = Duration::from_millis(ms);
            }
            "--ignore-term" => options.ignore_term = true,
            "--workers" => options.workers = value().parse().unwrap_or_else(|_| usage("bad count")),
            "--say" => options.say.push(value()),
            "--worker" => options.worker = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    options
}

fn usage(problem: &str) -> ! {
    eprintln!("testserver: {problem}");
    std::process::exit(2);
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Plays the server with this process's arguments, until killed.
pub fn run() -> ! {
    let options = parse();
    if options.worker {
        sleep_forever();
    }
    if options.ignore_term {
        // SAFETY: setting a signal disposition to SIG_IGN installs no handler.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    let mut stdout = std::io::stdout();
    for line in &options.say {
        let _ = writeln!(stdout, "{line}");
    }
    if options.mode == Mode::Exit {
        eprintln!("fatal: testserver was told to exit with code 3");
        std::process::exit(3);
    }

    // Workers are never waited for: they sleep until the process group is
    // killed, and whoever inherits them reaps them.
    let mut workers = Vec::new();
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("current_exe: {e}")));
    for _ in 0..options.workers {
        let worker = Command::new(&exe)
            .arg("--worker")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| usage(&format!("cannot fork a worker: {e}")));
        let _ = writeln!(stdout, "worker-pid: {}", worker.id());
        workers.push(worker);
    }
    let _ = stdout.flush();

    if options.mode == Mode::NoListen {
        let _ = writeln!(stdout, "not listening on purpose");
        sleep_forever();
    }
    std::thread::sleep(options.delay);
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .unwrap_or_else(|e| usage(&format!("cannot listen on port {}: {e}", options.port)));
    let _ = writeln!(stdout, "listening on {}", listener.local_addr().unwrap());

    let workers = workers
        .iter()
        .map(|w| w.id().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut held = Vec::new();
    let mut answered = 0_usize;
    loop {
        if let Ok((stream, _)) = listener.accept() {
            let mute = match options.mode {
                Mode::Mute => true,
                Mode::FailThenMute => answered > 0,
                _ => false,
            };
            if mute {
                held.push(stream);
                continue;
            }
            answered += 1;
            let _ = serve(stream, &options.mode, &workers);
        }
    }
}

fn serve(mut stream: TcpStream, mode: &Mode, workers: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers; requests here carry no body.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/healthz") if matches!(mode, Mode::Fail | Mode::FailThenMute) => {
            ("500 Internal Server Error", "unhealthy".to_owned())
        }
        ("GET", "/healthz") if *mode == Mode::Redirect => ("302 Found", String::new()),
        ("GET", "/healthz") => ("200 OK", "ok".to_owned()),
        ("GET", "/") => ("200 OK", "hello from the testserver".to_owned()),
        ("GET", "/pid") => ("200 OK", std::process::id().to_string()),
        ("GET", "/workers") => ("200 OK", workers.to_owned()),
        _ => ("404 Not Found", "not found".to_owned()),
    };
    // Logged before the answer: a client that has its answer knows the line is written (a
    // `SIGTERM` right after the answer would otherwise end the server before it logs).
    println!("request: {method} {path} -> {status}");
    write!(
        stream,
        "HTTP/1.1 {status}\r\nLocation: /\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(())
}
