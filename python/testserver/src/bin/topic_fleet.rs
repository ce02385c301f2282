//! The Rust processes of the topics proof (`python/tests/test_topic_fleet.py`):
//! systems whose actors publish to one durable topic, and `ProxyClient` processes that
//! publish to it and subscribe to it, all in MessagePack (a Python subscriber reads the same
//! topic).
//!
//! ```text
//! topic_fleet system URL NS TOPIC FIRST PUBLISHERS COUNT
//! topic_fleet client URL NS TOPIC FIRST PUBLISHERS COUNT GROUP TOTAL
//! ```
//!
//! `system`: an actor system serving on the Redis (`start_proxy`, system id `fleet-FIRST`)
//! with `PUBLISHERS` `Emitter` actors, each holding a clone of the proxy's `Topics`. `client`: a
//! `ProxyClient` subscribed to `TOPIC` in subscriber group `GROUP` (consumer `GROUP-1`),
//! expecting `TOTAL` distinct events. Each prints `ready` once set up, waits for `go` on its
//! standard input, then has `PUBLISHERS` publishers (numbered `FIRST..FIRST+PUBLISHERS`; in
//! a system, its actors from their handlers; in a client, tasks) each publish `COUNT` events
//! `{from: NUMBER, seq: 0..COUNT}` one after the other, all at once, and prints `published
//! PUBLISHERS*COUNT ms=T` (T: since `go`). A client also checks that each publisher's events come in order and, once it has
//! every event, prints `done received=R distinct=D duplicates=U out_of_order=O
//! redelivered=X ms=T`. Both exit when
//! their standard input ends (or on `stop`): the parent's death ends them too.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use conclib::redis::{
    ProxyClient, ProxyConfig,
    codec::MsgPack,
    start_proxy,
    topics::{Topic, Topics},
};
use conclib::{ActorSystem, actor};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One event: who published it, and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Tick {
    from: u32,
    seq: u64,
}

/// Publishes events from its handler, through the proxy's `Topics`.
#[actor]
struct Emitter {
    topics: Topics,
    topic: Topic,
    from: u32,
}

#[actor]
impl Emitter {
    /// Publishes `count` events, each once Redis took the one before.
    #[handle]
    async fn emit(&mut self, count: u64) -> Result<u64, String> {
        for seq in 0..count {
            let tick = Tick {
                from: self.from,
                seq,
            };
            self.topics
                .publish(&self.topic, &tick)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(count)
    }
}

struct Args {
    role: String,
    url: String,
    namespace: String,
    topic: String,
    first: u32,
    publishers: u32,
    count: u64,
    group: String,
    total: usize,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: topic_fleet system URL NS TOPIC FIRST PUBLISHERS COUNT | client URL NS TOPIC FIRST PUBLISHERS COUNT GROUP TOTAL";
    let want = match args.first().map(String::as_str) {
        Some("system") => 7,
        Some("client") => 9,
        _ => return Err(usage.into()),
    };
    if args.len() != want {
        return Err(usage.into());
    }
    let number = |i: usize| {
        args[i]
            .parse::<u64>()
            .map_err(|e| format!("{}: {e}", args[i]))
    };
    Ok(Args {
        role: args[0].clone(),
        url: args[1].clone(),
        namespace: args[2].clone(),
        topic: args[3].clone(),
        first: u32::try_from(number(4)?).map_err(|e| e.to_string())?,
        publishers: u32::try_from(number(5)?).map_err(|e| e.to_string())?,
        count: number(6)?,
        group: args.get(7).cloned().unwrap_or_default(),
        total: match args.get(8) {
            Some(_) => usize::try_from(number(8)?).map_err(|e| e.to_string())?,
            None => 0,
        },
    })
}

/// The lines of standard input, read on a thread of its own (it blocks); `stop` at its end.
fn orders() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".to_owned());
    });
    rx
}

/// Waits for `go`; `false` if told to stop first.
async fn wait_for_go(orders: &mut mpsc::UnboundedReceiver<String>) -> bool {
    while let Some(order) = orders.recv().await {
        match order.as_str() {
            "go" => return true,
            "stop" => return false,
            _ => {}
        }
    }
    false
}

async fn wait_for_stop(orders: &mut mpsc::UnboundedReceiver<String>) {
    while let Some(order) = orders.recv().await {
        if order == "stop" {
            return;
        }
    }
}

async fn system(args: Args) -> Result<(), Error> {
    let mut orders = orders();
    let name = format!("fleet-{}", args.first);
    let config = ProxyConfig::new(&args.url)
        .with_namespace(&args.namespace)
        .with_system_id(&name);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    let topic = Topic::durable(&args.topic)?.codec(MsgPack);
    let mut emitters = Vec::new();
    for from in args.first..args.first + args.publishers {
        let emitter = Emitter {
            topics: proxy.topics(),
            topic: topic.clone(),
            from,
        };
        emitters.push(system.spawn(emitter).await?);
    }
    println!("ready");
    if wait_for_go(&mut orders).await {
        let started = Instant::now();
        let asks: Vec<_> = emitters
            .into_iter()
            .map(|emitter| {
                let count = args.count;
                tokio::spawn(
                    async move { emitter.emit(count).timeout(Duration::from_secs(600)).await },
                )
            })
            .collect();
        let mut published = 0;
        for ask in asks {
            published += ask.await??;
        }
        println!("published {published} ms={}", started.elapsed().as_millis());
        wait_for_stop(&mut orders).await;
    }
    proxy.shutdown().await?;
    system.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// What a client's subscriber saw.
#[derive(Default)]
struct Seen {
    received: u64,
    distinct: HashSet<Tick>,
    last: HashMap<u32, u64>,
    out_of_order: u64,
}

impl Seen {
    fn note(&mut self, tick: Tick) {
        self.received += 1;
        if let Some(before) = self.last.insert(tick.from, tick.seq)
            && tick.seq <= before
        {
            self.out_of_order += 1;
            eprintln!("out of order: {tick:?} after seq {before}");
        }
        self.distinct.insert(tick);
    }
}

async fn client(args: Args) -> Result<(), Error> {
    let mut orders = orders();
    let config = ProxyConfig::new(&args.url).with_namespace(&args.namespace);
    let client = ProxyClient::connect(&config).await?;
    let topic = Topic::durable(&args.topic)?.codec(MsgPack);
    let mut sub = client
        .subscribe::<Tick>(&topic)
        .group(&args.group)
        .consumer(format!("{}-1", args.group))
        .buffer(256)
        .await?;
    println!("ready");
    if !wait_for_go(&mut orders).await {
        return Ok(());
    }
    let started = Instant::now();
    let publishers: Vec<_> = (args.first..args.first + args.publishers)
        .map(|from| {
            let (topics, topic, count) = (client.topics(), topic.clone(), args.count);
            tokio::spawn(async move {
                for seq in 0..count {
                    topics.publish(&topic, &Tick { from, seq }).await?;
                }
                Ok::<u64, conclib::redis::topics::TopicError>(count)
            })
        })
        .collect();
    let publishing = tokio::spawn(async move {
        let mut published = 0;
        for publisher in publishers {
            published += publisher.await.map_err(|e| e.to_string())??;
        }
        Ok::<(u64, u128), Error>((published, started.elapsed().as_millis()))
    });
    let mut seen = Seen::default();
    while seen.distinct.len() < args.total {
        // Quiet for 5 s: say where the subscription stands (on stderr, for a failure).
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Err(_) => eprintln!(
                "{}: no event for 5 s, {} of {}; {:?}",
                args.group,
                seen.distinct.len(),
                args.total,
                sub.stats()
            ),
            Ok(None) => return Err("the subscription ended".into()),
            Ok(Some(Err(e))) => return Err(format!("a topic error: {e}").into()),
            Ok(Some(Ok(tick))) => seen.note(tick),
        }
    }
    let received_ms = started.elapsed().as_millis();
    let (published, published_ms) = publishing.await??;
    println!("published {published} ms={published_ms}");
    println!(
        "done received={} distinct={} duplicates={} out_of_order={} redelivered={} ms={received_ms}",
        seen.received,
        seen.distinct.len(),
        seen.received - seen.distinct.len() as u64,
        seen.out_of_order,
        sub.stats().redelivered
    );
    sub.close().await;
    wait_for_stop(&mut orders).await;
    client.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("topic_fleet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if args.role == "system" {
            system(args).await
        } else {
            client(args).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("topic_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
