//! Server-Sent Events from an actor, for `curl -N` or a browser: a [`Jobs`] actor
//! publishes each job's progress to a live topic, and an axum server streams any topic as
//! SSE (the routes: [`conclib_examples::sse`]).
//!
//! ```text
//! cargo run -p conclib-examples --example sse [-- --port 3000]
//! curl -N localhost:3000/events/jobs.7            # in one terminal
//! curl -X POST 'localhost:3000/jobs/7?steps=3'    # in another
//! ```
//!
//! Redis: `CONCLIB_REDIS_URL` (with `ProxyConfig::from_env`), else a private redis-server
//! on a free port, stopped at exit. Runs until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};

use conclib::ActorSystem;
use conclib::redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use conclib_examples::BoxError;
use conclib_examples::sse::{Jobs, router};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    conclib_examples::init_tracing();
    let mut port = 3000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|p| p.parse().ok())) {
            ("--port", Some(p)) => port = p,
            _ => return Err("usage: sse [--port N]".into()),
        }
    }
    let config = ProxyConfig::from_env()?;
    // A private Redis unless one is named.
    let (redis, config) = if std::env::var_os("CONCLIB_REDIS_URL").is_some() {
        (None, config)
    } else {
        let redis = start_redis(&config).await?;
        let config = redis.config(&config);
        (Some(redis), config)
    };

    // The actors' side: the Jobs actor, reachable through Redis, publishing with the
    // proxy's topics.
    let system = ActorSystem::new("sse-example");
    let proxy = start_proxy(&system, &config).await?;
    system
        .spawn(Jobs {
            topics: proxy.topics(),
        })
        .await?;
    proxy.refresh().await; // serves the actor spawned after it started, now

    // The web side: a client of the same Redis (it could be another process).
    let client = ProxyClient::connect(&config).await?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("listening on {base}");
    println!("  curl -N {base}/events/jobs.7");
    println!("  curl -X POST '{base}/jobs/7?steps=3'");
    axum::serve(listener, router(client.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;

    client.shutdown().await;
    proxy.shutdown().await?;
    system.shutdown(std::time::Duration::from_secs(5)).await?;
    if let Some(redis) = redis {
        redis.shutdown()?;
    }
    Ok(())
}
