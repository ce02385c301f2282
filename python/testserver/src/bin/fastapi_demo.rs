//! The FastAPI example, run the way a deployment runs it: a redis-server
//! (`conclib::redis::start_redis`), the test server's actors behind the proxy, then
//! `uvicorn python.examples.fastapi_app:app --workers 3` under `conclib::apid::start_api`;
//! drives HTTP load through it, checks every answer, prints
//! `RESULT http_rps_actor=.. http_rps_plain=..` and shuts everything down.
//!
//! ```text
//! fastapi_demo PYTHON [--requests N] [--concurrency C] [--workers W]
//! ```
//! `PYTHON`: the venv's python (or `CONCLIB_PYTHON`). Run from anywhere: the app is found
//! relative to this crate's directory.
#[allow(dead_code)]
#[path = "../shapes.rs"]
mod shapes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use conclib::apid::{ApiConfig, start_api};
use conclib::redis::{ProxyConfig, codec::MsgPack, start_proxy, start_redis};
use conclib::{ActorSystem, PanicPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    python: String,
    requests: usize,
    concurrency: usize,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut python = std::env::var("CONCLIB_PYTHON").ok();
    let (mut requests, mut concurrency, mut workers) = (2000, 32, 3);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--requests" => requests = number("--requests")?,
            "--concurrency" => concurrency = number("--concurrency")?,
            "--workers" => workers = number("--workers")?,
            other if !other.starts_with('-') => python = Some(other.to_owned()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let python = python
        .ok_or("usage: fastapi_demo PYTHON [--requests N] [--concurrency C] [--workers W]")?;
    Ok(Args {
        python,
        requests,
        concurrency,
        workers,
    })
}

/// One HTTP/1.1 GET on a kept-alive connection; the status and body.
async fn get(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    path: &str,
) -> Result<(u16, String), Error> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    buf.clear();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("bad status line")?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("no content-length")?;
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err("connection closed".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            return Ok((status, body));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `requests` GETs of `/{route}/{n}` from `concurrency` connections; every answer checked.
async fn load(
    port: u16,
    route: &'static str,
    requests: usize,
    concurrency: usize,
) -> Result<f64, Error> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let mut buf = Vec::new();
            let mut i = c;
            while i < requests {
                let (status, body) = get(&mut stream, &mut buf, &format!("/{route}/{i}")).await?;
                let want = format!("{{\"n\":{i},\"double\":{}}}", 2 * i);
                if status != 200 || body != want {
                    return Err::<(), Error>(format!("GET /{route}/{i}: {status} {body}").into());
                }
                i += concurrency;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run(args: Args) -> Result<(), Error> {
    let redis = start_redis(&ProxyConfig::default()).await?;
    let config = redis
        .config(&ProxyConfig::default())
        .with_namespace("fastapi")
        .with_codec(MsgPack)
        .with_snapshot_interval(None);
    let system = ActorSystem::new("fastapi-demo");
    system
        .build(shapes::Shapes::default())
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await?;
    let proxy = start_proxy(&system, &config).await?;
    let root: PathBuf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let port = free_port()?;
    let api = start_api(
        ApiConfig::new(
            "fastapi",
            &args.python,
            format!("http://127.0.0.1:{port}/health"),
        )
        .args([
            "-m",
            "uvicorn",
            "python.examples.fastapi_app:app",
            "--host",
            "127.0.0.1",
        ])
        .args([
            "--port".to_owned(),
            port.to_string(),
            "--workers".to_owned(),
            args.workers.to_string(),
        ])
        .args(["--log-level", "warning"])
        .env("CONCLIB_URL", redis.url())
        .env("CONCLIB_NAMESPACE", "fastapi")
        .cwd(root)
        .startup_timeout(Duration::from_secs(60))
        .shutdown_grace(Duration::from_secs(10)),
    )
    .await?;
    let pid = api.pid();
    let measured = async {
        // Warm up each worker's client (it connects on its first ask).
        load(port, "double", 64, 8).await?;
        let actor = load(port, "double", args.requests, args.concurrency).await?;
        let plain = load(port, "plain", args.requests, args.concurrency).await?;
        Ok::<_, Error>((actor, plain))
    }
    .await;
    let outcome = api.shutdown().await;
    proxy.shutdown().await?;
    system.shutdown(Duration::from_secs(5)).await?;
    redis.shutdown()?;
    let (actor, plain) = measured?;
    let outcome = outcome?;
    // Nothing left behind: the server's process group is gone.
    // (Workers killed with the group are reaped by init: give it a moment.)
    let mut left = true;
    for _ in 0..100 {
        // SAFETY: kill with signal 0 only checks whether the group exists.
        left = unsafe { kill(-(pid as i32), 0) } == 0;
        if !left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if left {
        return Err(format!("processes of group {pid} outlived the shutdown").into());
    }
    eprintln!("uvicorn (pid {pid}) ended: {outcome:?}");
    println!("RESULT http_rps_actor={actor:.0} http_rps_plain={plain:.0}");
    Ok(())
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastapi_demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
