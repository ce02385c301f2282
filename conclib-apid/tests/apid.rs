//! Integration tests with real processes: this test binary, started again in the server's
//! role (`testserver/mod.rs`), plays the API server.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conclib_apid::{ApiConfig, ApiError, HealthAttempt, OutputStream, ShutdownOutcome, start_api};

mod testserver;

/// Set in the environment of this binary started again as the test server.
const SERVER_ROLE: &str = "CONCLIB_APID_TESTSERVER";
/// Set in the environment of this binary started again as a parent that dies with a server.
const PARENT_ROLE: &str = "CONCLIB_APID_PARENT_DEATH_HELPER";

fn main() {
    // The helper roles first, before anything else runs.
    if std::env::var_os(SERVER_ROLE).is_some() {
        testserver::run();
    }
    if std::env::var_os(PARENT_ROLE).is_some() {
        return parent_death_helper();
    }
    conclib_testkit::run(conclib_testkit::tests![
        healthy_start_serves_and_shuts_down,
        early_exit_reports_status_and_stderr,
        never_healthy_times_out_with_last_status,
        connection_refused_is_named,
        program_not_found_is_typed,
        shutdown_takes_the_whole_process_group,
        sigterm_ignored_means_killed_after_grace,
        drop_kills_the_server,
        recent_output_keeps_the_servers_lines,
        output_ring_is_bounded,
        shell_config_runs_a_script,
        wait_returns_the_exit_status,
        signals_this_process_ignores_still_stop_the_server,
        invalid_url_is_a_config_error,
        an_https_url_is_a_config_error_at_once,
        a_redirect_is_not_healthy,
        an_attempt_cut_short_by_the_deadline_keeps_the_last_answer,
        a_server_that_never_answers_is_no_response,
        server_outlives_the_thread_that_started_it,
        server_dies_with_its_parent_process,
    ]);
}

/// This test binary, which plays the server with `SERVER_ROLE` set.
fn server_exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap()
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for the test server on a fresh port, with short timeouts.
fn server(name: &str, args: &[&str]) -> (ApiConfig, u16) {
    let port = free_port();
    let config = ApiConfig::new(
        name,
        server_exe(),
        format!("http://127.0.0.1:{port}/healthz"),
    )
    .env(SERVER_ROLE, "1")
    .args(["--port", &port.to_string()])
    .args(args)
    .startup_timeout(Duration::from_secs(20))
    .poll_interval(Duration::from_millis(20))
    .shutdown_grace(Duration::from_secs(5));
    (config, port)
}

/// Whether `pid` is a live process (a zombie counts as dead: it has exited
/// and only waits to be reaped, possibly by an init that never does).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        }
    }
}

/// Waits (at most 5 s) for `pid` to stop being alive.
fn gone_within_5s(pid: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn healthy_start_serves_and_shuts_down() {
    let (config, port) = server("healthy", &["--delay-ms", "300"]);
    let mut daemon = start_api(config).await.expect("server starts");
    let pid = daemon.pid();
    assert_eq!(daemon.name(), "healthy");
    assert_eq!(
        daemon.healthcheck_url(),
        format!("http://127.0.0.1:{port}/healthz")
    );
    assert!(daemon.is_alive());
    assert!(alive(pid));

    let (status, body) = get(port, "/").await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello from the testserver");
    assert_eq!(get(port, "/pid").await.1, pid.to_string());

    let outcome = daemon.shutdown().await.unwrap();
    assert!(
        matches!(outcome, ShutdownOutcome::Terminated(_)),
        "{outcome:?}"
    );
    assert!(!outcome.was_killed());
    // Ended by our SIGTERM, and reaped: the pid no longer exists at all.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(outcome.status().signal(), Some(libc::SIGTERM));
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ESRCH)
    );
}

async fn early_exit_reports_status_and_stderr() {
    // A long startup timeout: the error must come from the exit, not the clock.
    let (config, _) = server("early", &["--mode", "exit"]);
    let started = Instant::now();
    let error = start_api(config.startup_timeout(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let ApiError::EarlyExit { status, url, .. } = &error else {
        panic!("expected EarlyExit, got {error:?}");
    };
    assert_eq!(status.code(), Some(3));
    assert!(url.ends_with("/healthz"));
    let stderr: Vec<_> = error.stderr_lines().collect();
    assert_eq!(stderr, ["fatal: testserver was told to exit with code 3"]);
    let message = error.to_string();
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("[stderr] fatal: testserver was told to exit with code 3"),
        "{message}"
    );
    assert_eq!(error.exit_status().and_then(|s| s.code()), Some(3));
}

async fn never_healthy_times_out_with_last_status() {
    let (config, port) = server("unhealthy", &["--mode", "fail"]);
    let timeout = Duration::from_millis(800);
    let started = Instant::now();
    let error = start_api(config.startup_timeout(timeout))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
    let ApiError::HealthTimeout { url, last, pid, .. } = &error else {
        panic!("expected HealthTimeout, got {error:?}");
    };
    let expected_url = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(url, &expected_url);
    assert_eq!(last, &HealthAttempt::Status(500));
    let message = error.to_string();
    assert!(message.contains(&expected_url), "{message}");
    assert!(message.contains("HTTP status 500"), "{message}");
    // The server's own log of the failing requests made it into the error.
    assert!(
        error
            .output()
            .iter()
            .any(|l| l.line.contains("GET /healthz -> 500")),
        "{message}"
    );
    // And the server was killed.
    assert!(gone_within_5s(*pid));
}

async fn connection_refused_is_named() {
    let (config, _) = server("silent", &["--mode", "no-listen"]);
    let error = start_api(config.startup_timeout(Duration::from_millis(500)))
        .await
        .unwrap_err();
    let ApiError::HealthTimeout { last, pid, .. } = &error else {
        panic!("expected HealthTimeout, got {error:?}");
    };
    let HealthAttempt::Error(text) = last else {
        panic!("expected a request error, got {last:?}");
    };
    assert!(text.contains("Connection refused"), "{text}");
    assert!(error.to_string().contains("Connection refused"), "{error}");
    assert!(gone_within_5s(*pid));
}

async fn program_not_found_is_typed() {
    for program in [
        "/nonexistent/conclib-apid-no-such-program",
        "conclib-apid-no-such-program-in-path",
    ] {
        let config = ApiConfig::new("missing", program, "http://127.0.0.1:1/healthz");
        let error = start_api(config).await.unwrap_err();
        match &error {
            ApiError::ProgramNotFound {
                program: named,
                source,
                ..
            } => {
                assert_eq!(named, program);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected ProgramNotFound, got {other:?}"),
        }
        assert!(error.to_string().contains(program), "{error}");
    }
}

async fn shutdown_takes_the_whole_process_group() {
    let (config, port) = server("forking", &["--workers", "2"]);
    let daemon = start_api(config).await.unwrap();
    let (status, workers) = get(port, "/workers").await;
    assert_eq!(status, 200);
    let mut pids: Vec<u32> = workers
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{workers:?}");
    pids.push(daemon.pid());
    for &pid in &pids {
        assert!(alive(pid), "pid {pid} should be running");
        // Same process group as the server, which leads it.
        assert_eq!(
            unsafe { libc::getpgid(pid as libc::pid_t) },
            daemon.pid() as libc::pid_t
        );
    }
    let log = daemon.output_log();

    daemon.shutdown().await.unwrap();
    for &pid in &pids {
        // The workers are killed, not reaped by us: allow init to reap them.
        assert!(gone_within_5s(pid), "pid {pid} survived shutdown");
    }
    // The server also printed the worker pids.
    let printed: Vec<_> = log
        .lines()
        .into_iter()
        .filter_map(|l| l.line.strip_prefix("worker-pid: ").map(str::to_owned))
        .collect();
    assert_eq!(printed.join(" "), workers);
}

async fn sigterm_ignored_means_killed_after_grace() {
    let (config, _) = server("stubborn", &["--ignore-term"]);
    let grace = Duration::from_millis(300);
    let daemon = start_api(config.shutdown_grace(grace)).await.unwrap();
    let pid = daemon.pid();
    let started = Instant::now();
    let outcome = daemon.shutdown().await.unwrap();
    assert!(started.elapsed() >= grace);
    assert!(outcome.was_killed(), "{outcome:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(outcome.status().signal(), Some(libc::SIGKILL));
    assert!(!alive(pid));
}

async fn drop_kills_the_server() {
    let (config, port) = server("dropped", &["--workers", "1"]);
    let daemon = start_api(config).await.unwrap();
    let pid = daemon.pid();
    let worker: u32 = get(port, "/workers").await.1.trim().parse().unwrap();
    assert!(alive(pid) && alive(worker));
    drop(daemon);
    assert!(gone_within_5s(pid), "server survived drop");
    assert!(gone_within_5s(worker), "worker survived drop");
}

async fn recent_output_keeps_the_servers_lines() {
    let (config, port) = server("chatty", &["--say", "first line", "--say", "second line"]);
    let daemon = start_api(config.output_capacity(50)).await.unwrap();
    get(port, "/").await;
    let log = daemon.output_log();
    daemon.shutdown().await.unwrap();
    let lines: Vec<_> = log.lines();
    let text: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(&text[..2], ["first line", "second line"], "{text:?}");
    assert!(
        text.iter()
            .any(|l| l.starts_with("listening on 127.0.0.1:"))
    );
    assert!(text.contains(&"request: GET / -> 200 OK"), "{text:?}");
    assert!(lines.iter().all(|l| l.stream == OutputStream::Stdout));
}

async fn output_ring_is_bounded() {
    let says: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    let mut args = Vec::new();
    for say in &says {
        args.extend(["--say", say.as_str()]);
    }
    let (config, _) = server("bounded", &args);
    let daemon = start_api(config.output_capacity(3)).await.unwrap();
    let log = daemon.output_log();
    daemon.shutdown().await.unwrap();
    assert_eq!(log.capacity(), 3);
    assert_eq!(log.len(), 3);
    // The oldest lines were dropped.
    assert!(log.lines().iter().all(|l| l.line != "line 0"));
}

async fn shell_config_runs_a_script() {
    let port = free_port();
    let config = ApiConfig::shell(
        "shell",
        format!(
            "echo from-the-shell; exec '{}' --port {port}",
            server_exe().display()
        ),
        format!("http://127.0.0.1:{port}/healthz"),
    )
    .env(SERVER_ROLE, "1")
    .poll_interval(Duration::from_millis(20));
    let daemon = start_api(config).await.unwrap();
    let log = daemon.output_log();
    assert_eq!(get(port, "/").await.0, 200);
    daemon.shutdown().await.unwrap();
    assert_eq!(log.lines()[0].line, "from-the-shell");
}

async fn wait_returns_the_exit_status() {
    let (config, port) = server("waited", &[]);
    // As when this process was started in the background by a non-interactive shell: it
    // ignores SIGINT, which exec would pass on to the server (the cause of a flaky run).
    // SAFETY: setting a disposition installs no handler; restored below.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let started = start_api(config).await;
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    let mut daemon = started.unwrap();
    // Someone else stops the server; `wait` reports how it ended.
    assert_eq!(get(port, "/healthz").await.0, 200);
    unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGINT) };
    let status = daemon.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT));
    assert!(!daemon.is_alive());
    let outcome = daemon.shutdown().await.unwrap();
    assert_eq!(outcome, ShutdownOutcome::AlreadyExited(status));
}

/// The server starts with the default dispositions of SIGQUIT and SIGHUP too (a process
/// under `nohup`, or started in the background, ignores them), so each still stops it.
async fn signals_this_process_ignores_still_stop_the_server() {
    use std::os::unix::process::ExitStatusExt;
    for signal in [libc::SIGQUIT, libc::SIGHUP] {
        let (config, port) = server("ignoring", &[]);
        // SAFETY: setting a disposition installs no handler; restored below.
        let previous = unsafe { libc::signal(signal, libc::SIG_IGN) };
        let started = start_api(config).await;
        // SAFETY: as above.
        unsafe { libc::signal(signal, previous) };
        let mut daemon = started.unwrap();
        assert_eq!(get(port, "/healthz").await.0, 200);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(daemon.pid() as libc::pid_t, signal) };
        let status = daemon.wait().await.unwrap();
        assert_eq!(status.signal(), Some(signal), "{status:?}");
    }
}

async fn invalid_url_is_a_config_error() {
    let config = ApiConfig::new("bad-url", server_exe(), "not a url");
    let error = start_api(config).await.unwrap_err();
    assert!(matches!(error, ApiError::InvalidConfig { .. }), "{error:?}");
}

async fn an_https_url_is_a_config_error_at_once() {
    // The health check speaks plain HTTP: refused before anything starts, not after the
    // whole startup timeout of failed requests.
    let (mut config, port) = server("tls", &[]);
    config.healthcheck_url = format!("https://127.0.0.1:{port}/healthz");
    let error = start_api(config.startup_timeout(Duration::from_secs(600)))
        .await
        .unwrap_err();
    let ApiError::InvalidConfig { reason, .. } = &error else {
        panic!("expected InvalidConfig, got {error:?}");
    };
    assert!(reason.contains("http://"), "{reason}");
}

async fn a_redirect_is_not_healthy() {
    // The health URL answers 302 to a page that answers 200: only the URL's own answer
    // counts, so the start times out with the 302.
    // Long enough for the server to be listening by the last attempt on a loaded machine.
    let (config, _) = server("moved", &["--mode", "redirect"]);
    let error = start_api(config.startup_timeout(Duration::from_secs(5)))
        .await
        .unwrap_err();
    let ApiError::HealthTimeout { last, pid, .. } = &error else {
        panic!("expected HealthTimeout, got {error:?}");
    };
    assert_eq!(last, &HealthAttempt::Status(302));
    assert!(
        !error.output().iter().any(|l| l.line.contains("GET / ->")),
        "the redirect was followed: {error}"
    );
    assert!(gone_within_5s(*pid));
}

async fn an_attempt_cut_short_by_the_deadline_keeps_the_last_answer() {
    // The first health check is answered 500; the next is never answered, and the start's
    // deadline ends it long before its own timeout: the error names the 500, not a silence
    // that only the deadline made.
    // Long enough for the server to be listening by the last attempt on a loaded machine.
    let (config, _) = server("cut", &["--mode", "fail-then-mute"]);
    let config = config
        .startup_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(600));
    let error = start_api(config).await.unwrap_err();
    let ApiError::HealthTimeout { last, pid, .. } = &error else {
        panic!("expected HealthTimeout, got {error:?}");
    };
    assert_eq!(last, &HealthAttempt::Status(500), "{error}");
    assert!(gone_within_5s(*pid));
}

async fn a_server_that_never_answers_is_no_response() {
    // Long enough for the server to be listening by the last attempt on a loaded machine
    // (before it listens, an attempt is refused); each attempt gives up after 300 ms.
    let (config, _) = server("mute", &["--mode", "mute"]);
    let config = config
        .startup_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_millis(300));
    let error = start_api(config).await.unwrap_err();
    let ApiError::HealthTimeout { last, pid, .. } = &error else {
        panic!("expected HealthTimeout, got {error:?}");
    };
    assert_eq!(last, &HealthAttempt::NoResponse);
    assert!(error.to_string().contains("no answer in time"), "{error}");
    assert!(gone_within_5s(*pid));
}

async fn server_outlives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the forking *thread* exits. Start the
    // server from a short-lived thread and check it is still serving after
    // that thread is gone.
    let (config, port) = server("thread", &[]);
    let runtime = tokio::runtime::Handle::current();
    let mut daemon = std::thread::spawn(move || runtime.block_on(start_api(config)))
        .join()
        .unwrap()
        .unwrap();
    // Give a wrongly delivered death signal every chance to land.
    let waited = tokio::time::timeout(Duration::from_millis(300), daemon.wait()).await;
    assert!(
        waited.is_err(),
        "server died with its starting thread: {waited:?}"
    );
    assert_eq!(get(port, "/healthz").await.0, 200);
    assert!(daemon.shutdown().await.is_ok());
}

/// Not a test: this binary's role with `PARENT_ROLE` set, started by
/// `server_dies_with_its_parent_process`: it starts a server, prints its pid, and blocks
/// until killed (or 60 s pass, should the parent test fail).
fn parent_death_helper() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (config, _) = server("orphan", &[]);
        let daemon = start_api(config).await.unwrap();
        println!("APID_PID={}", daemon.pid());
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(daemon);
    });
}

async fn server_dies_with_its_parent_process() {
    tokio::task::spawn_blocking(parent_dies).await.unwrap();
}

fn parent_dies() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .env(PARENT_ROLE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let mut server_pid = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some((_, pid)) = line.split_once("APID_PID=") {
            server_pid = Some(pid.trim().parse::<u32>().unwrap());
            break;
        }
    }
    let server_pid = server_pid.expect("helper printed the server pid");
    assert!(alive(server_pid));
    // SIGKILL: no destructor, no shutdown; only the kernel can clean up.
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        gone_within_5s(server_pid),
        "server outlived its parent process"
    );
}
