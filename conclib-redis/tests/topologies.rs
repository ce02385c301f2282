//! End-to-end tests against Redis deployments other than one plain server: TLS
//! (`rediss://`), Sentinel (`redis-sentinel://`) and Cluster (`redis-cluster://`). Each test
//! runs its own redis-server processes on free ports (never the system's Redis) and kills
//! them when it ends, failed or not.
mod common;
#[path = "common/servers.rs"]
mod servers;

use conclib_core::AskError;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, ProxyError, ProxyHandle, start_proxy};

/// How long a connection attempt may take in these tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn config(test: &str, url: impl Into<String>) -> ProxyConfig {
    let mut config = ProxyConfig::new(url).with_namespace(format!("topo-{test}"));
    config.connect_timeout = CONNECT_TIMEOUT;
    config
}

async fn system_with(name: &str, urns: &[&str]) -> ActorSystem {
    let system = ActorSystem::new(name);
    for urn in urns {
        system
            .build(Counter::default())
            .urn(*urn)
            .spawn()
            .await
            .unwrap();
    }
    system
}

/// A system named `name` serving one counter, `counter`, through a proxy and a client, both
/// on `config`; checks a typed answer, a typed handler error, a tell, and the unknown URN.
async fn serve_and_ask(
    name: &str,
    config: &ProxyConfig,
) -> (ActorSystem, ProxyHandle, ProxyClient) {
    let system = system_with(name, &["counter"]).await;
    let proxy = start_proxy(&system, config)
        .await
        .unwrap_or_else(|e| panic!("start_proxy through {}: {e}", config.url));
    assert_eq!(proxy.served_urns(), vec!["counter".to_owned()]);
    let client = ProxyClient::connect(config)
        .await
        .unwrap_or_else(|e| panic!("ProxyClient::connect through {}: {e}", config.url));

    assert_eq!(client.ask("counter", Add(2)).await, Ok(2));
    assert_eq!(client.ask("counter", Add(3)).await, Ok(5));
    assert_eq!(client.ask("counter", Get).await, Ok(5));
    assert_eq!(
        client.ask("counter", Forbidden("no".into())).await,
        Err(AskError::Handler(Refusal::NotAllowed {
            reason: "no".into()
        }))
    );
    client.tell("counter", Record(7)).await.unwrap();
    assert_eq!(client.ask("counter", History).await, Ok(vec![7]));
    assert_eq!(
        client.resolve("counter").await.unwrap().as_deref(),
        Some(name)
    );

    let started = Instant::now();
    assert_eq!(
        client.ask("nobody", Get).await,
        Err(AskError::UnknownUrn {
            urn: "nobody".into()
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "UnknownUrn took {:?}",
        started.elapsed()
    );
    (system, proxy, client)
}

async fn finish(system: ActorSystem, proxy: ProxyHandle, client: ProxyClient) {
    proxy.shutdown().await.unwrap();
    client.shutdown().await;
    assert_eq!(
        client.ask("counter", Get).await,
        Err(AskError::Transport("the client is closed".into()))
    );
    system.shutdown(Duration::from_secs(2)).await.unwrap();
}

/// `connect` fails with `Unavailable` (not a hang, not another kind) within the connect
/// timeout; the proxy does too.
async fn assert_unavailable(config: &ProxyConfig, what: &str) -> String {
    let started = Instant::now();
    let result = ProxyClient::connect(config).await;
    let elapsed = started.elapsed();
    let message = match result {
        Err(ProxyError::Unavailable(message)) => message,
        Err(other) => panic!("{what}: expected Unavailable, got {other:?}"),
        Ok(_) => panic!("{what}: the client connected"),
    };
    assert!(
        elapsed < CONNECT_TIMEOUT + Duration::from_millis(500),
        "{what}: the client took {elapsed:?} to fail"
    );

    let system = ActorSystem::new("unreachable");
    let started = Instant::now();
    let result = start_proxy(&system, config).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(conclib_redis::ServeError::Unavailable(_))),
        "{what}: start_proxy gave {:?}",
        result.map(|_| "a running proxy")
    );
    assert!(
        elapsed < CONNECT_TIMEOUT + Duration::from_millis(500),
        "{what}: the proxy took {elapsed:?} to fail"
    );
    message
}

/// `rediss://` to a server whose only port is TLS (`--port 0`), its certificate signed by a
/// CA made for the test and trusted through `tls_ca_file`: proxy and client work as usual.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end() {
    let tls = servers::start_tls().await;
    let config =
        config("tls", format!("rediss://127.0.0.1:{}", tls.port)).with_tls_ca_file(&tls.ca);
    let (system, proxy, client) = serve_and_ask("tls", &config).await;
    // Many concurrent asks over the TLS connections.
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.ask("counter", Echo(format!("m{i}"))).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(format!("m{i}")));
    }
    finish(system, proxy, client).await;
}

/// Plain text against the TLS port, and TLS without the CA, fail with `Unavailable` within
/// the connect timeout (no hang); unusable `tls_ca_file` settings are configuration errors.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_misconfigurations_fail_fast_with_typed_errors() {
    let tls = servers::start_tls().await;
    let tls_url = format!("rediss://127.0.0.1:{}", tls.port);

    // Plain text against the TLS port: the server drops the connection.
    let plain = config("tls-plain", format!("redis://127.0.0.1:{}", tls.port));
    assert_unavailable(&plain, "redis:// against the TLS port").await;

    // TLS without the test's CA: the system's roots do not trust the server.
    let untrusted = config("tls-untrusted", tls_url.clone());
    let message = assert_unavailable(&untrusted, "rediss:// without the CA").await;
    assert!(
        message.to_ascii_lowercase().contains("certificate"),
        "not a certificate error: {message}"
    );

    // Configuration errors, at once.
    let cases = [
        (
            config("tls-missing", tls_url.clone())
                .with_tls_ca_file(tls.ca.with_file_name("none.pem")),
            "none.pem",
        ),
        (
            // A PEM file with a key and no certificate.
            config("tls-no-cert", tls_url.clone())
                .with_tls_ca_file(tls.ca.with_file_name("ca.key")),
            "no PEM certificate",
        ),
        (
            config("tls-not-tls", format!("redis://127.0.0.1:{}", tls.port))
                .with_tls_ca_file(&tls.ca),
            "does not use TLS",
        ),
    ];
    for (config, expected) in cases {
        let started = Instant::now();
        match ProxyClient::connect(&config).await {
            Err(ProxyError::Config(message)) => {
                assert!(message.contains(expected), "{message:?} lacks {expected:?}")
            }
            Err(other) => panic!("{expected}: expected a configuration error, got {other:?}"),
            Ok(_) => panic!("{expected}: the client connected"),
        }
        let system = ActorSystem::new("misconfigured");
        let result = start_proxy(&system, &config).await;
        assert!(
            matches!(&result, Err(conclib_redis::ServeError::Config(m)) if m.contains(expected)),
            "{expected}: start_proxy gave {:?}",
            result.map(|_| "a running proxy")
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}

/// `redis-sentinel://` naming only the sentinel: the proxy and the client reach the primary
/// it names; an unknown service name is `Unavailable` within the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_end_to_end() {
    let setup = servers::start_sentinel().await;
    let config = config("sentinel", setup.url());
    let (system, proxy, client) = serve_and_ask("sentinel", &config).await;

    // The proxy registered on the primary the sentinel named (the URL names only the sentinel).
    assert_eq!(
        servers::keys(setup.primary.port, "topo-sentinel:urn:*").await,
        vec!["topo-sentinel:urn:counter".to_owned()]
    );
    finish(system, proxy, client).await;

    // A service the sentinel does not know: a typed error, within the connect timeout.
    let unknown = config.with_url(format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=nosuchservice",
        setup.sentinel.port
    ));
    assert_unavailable(&unknown, "an unknown sentinel service").await;
}

/// For each node of `cluster`, the first `per_node` names `name(0)`, `name(1)`, ... whose
/// `key(name)` lives on that node.
fn names_per_node(
    cluster: &servers::Cluster,
    per_node: usize,
    name: impl Fn(usize) -> String,
    key: impl Fn(&str) -> String,
) -> Vec<Vec<String>> {
    let mut found = vec![Vec::new(); cluster.nodes.len()];
    for i in 0.. {
        let name = name(i);
        let node = cluster.node_of_key(&key(&name));
        if found[node].len() < per_node {
            found[node].push(name);
        }
        if found.iter().all(|f| f.len() == per_node) {
            break;
        }
    }
    found
}

/// `redis-cluster://` over three primaries: ownership keys, request streams and (by chance)
/// reply lists on every node; asks, tells and resolutions of every actor from two clients,
/// unknown URNs on every node, and URNs released on every node at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_end_to_end() {
    let cluster = servers::start_cluster(3).await;
    let n = cluster.nodes.len();
    let ns = "topo-cluster";
    let mut config = config("cluster", cluster.url());
    // Shutdown deletes the ownership keys, which live on every node; retired for good (no
    // departed grace), the URNs are unknown at once.
    config.release_on_shutdown = true;
    config.departed_grace = Duration::ZERO;

    // Two URNs whose ownership keys live on each node, and a system whose request stream
    // lives on each node.
    let urns_of_node = names_per_node(
        &cluster,
        2,
        |i| format!("actor-{i}"),
        |u| format!("{ns}:urn:{u}"),
    );
    let system_of_node = names_per_node(
        &cluster,
        1,
        |i| format!("sys-{i}"),
        |id| format!("{ns}:sys:{id}:req"),
    );
    // System k serves the first URN of node k and the second of node k + 1: each system
    // serves an actor whose ownership key is on another node than its stream.
    let mut served: BTreeMap<String, String> = BTreeMap::new();
    let mut running = Vec::new();
    for k in 0..n {
        let id = &system_of_node[k][0];
        let urns = [
            urns_of_node[k][0].as_str(),
            urns_of_node[(k + 1) % n][1].as_str(),
        ];
        let system = system_with(id, &urns).await;
        let proxy = start_proxy(&system, &config)
            .await
            .unwrap_or_else(|e| panic!("start_proxy for {id} through {}: {e}", config.url));
        let mut expected: Vec<String> = urns.iter().map(|u| u.to_string()).collect();
        expected.sort();
        assert_eq!(proxy.served_urns(), expected);
        for urn in urns {
            served.insert(urn.to_owned(), id.clone());
        }
        running.push((system, proxy));
    }

    // Every node holds the ownership keys and the request stream computed for it.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut expected: Vec<String> = urns_of_node[i]
            .iter()
            .map(|u| format!("{ns}:urn:{u}"))
            .collect();
        expected.sort();
        assert_eq!(
            servers::keys(node.port, &format!("{ns}:urn:*")).await,
            expected,
            "ownership keys on node {i}"
        );
        assert_eq!(
            servers::keys(node.port, &format!("{ns}:sys:*:req")).await,
            vec![format!("{ns}:sys:{}:req", system_of_node[i][0])],
            "request streams on node {i}"
        );
    }

    // Two clients (their reply lists hash to random slots); every actor asked by both, the
    // actors in parallel.
    let clients = [
        ProxyClient::connect(&config).await.unwrap(),
        ProxyClient::connect(&config).await.unwrap(),
    ];
    let mut checks = tokio::task::JoinSet::new();
    for (i, (urn, system)) in served.iter().enumerate() {
        let i = i as u64 + 1;
        let [a, b] = clients.clone();
        let (urn, system) = (urn.clone(), system.clone());
        checks.spawn(async move {
            assert_eq!(a.ask(urn.as_str(), Add(i)).await, Ok(i), "{urn}");
            assert_eq!(b.ask(urn.as_str(), Add(i)).await, Ok(2 * i), "{urn}");
            assert_eq!(b.resolve(&urn).await, Ok(Some(system)), "{urn}");
            b.tell(&urn, Record(i)).await.unwrap();
            assert_eq!(a.ask(urn.as_str(), History).await, Ok(vec![i]), "{urn}");
        });
    }
    while let Some(check) = checks.join_next().await {
        check.unwrap();
    }
    // Many concurrent asks of every actor from both clients.
    let mut asks = tokio::task::JoinSet::new();
    for j in 0..40u64 {
        for urn in served.keys() {
            let client = clients[(j % 2) as usize].clone();
            let text = format!("{urn}/{j}");
            let urn = urn.clone();
            asks.spawn(async move { (client.ask(urn, Echo(text.clone())).await, text) });
        }
    }
    while let Some(answer) = asks.join_next().await {
        let (answer, text) = answer.unwrap();
        assert_eq!(answer, Ok(text));
    }

    // Unknown URNs whose ownership keys would live on each node.
    for urns in names_per_node(
        &cluster,
        1,
        |i| format!("nobody-{i}"),
        |u| format!("{ns}:urn:{u}"),
    ) {
        for client in &clients {
            assert_eq!(
                client.ask(urns[0].as_str(), Get).await,
                Err(AskError::UnknownUrn {
                    urn: urns[0].clone()
                })
            );
        }
    }

    for (system, proxy) in running {
        proxy.shutdown().await.unwrap();
        system.shutdown(Duration::from_secs(2)).await.unwrap();
    }
    // Released on shutdown: no ownership key is left on any node, and a new client (no
    // cached resolution) finds no actor.
    for (i, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(
            servers::keys(node.port, &format!("{ns}:urn:*")).await,
            Vec::<String>::new(),
            "ownership keys left on node {i}"
        );
    }
    let late = ProxyClient::connect(&config).await.unwrap();
    for urn in served.keys() {
        assert_eq!(
            late.ask(urn.as_str(), Get).await,
            Err(AskError::UnknownUrn { urn: urn.clone() })
        );
    }
    late.shutdown().await;
    for client in clients {
        client.shutdown().await;
    }
}

/// Every command of the client and the proxy should go straight to the node that owns its
/// key: a stable cluster then never answers MOVED, and no ask waits behind a blocking read.
///
/// fred routes a custom command by its `cluster_hash` only when that is a slot; any other
/// policy falls back to the slot of the first string argument (a script's SHA, `GROUP`,
/// `CREATE`): Redis answers MOVED, fred re-sends, and a reply push redirected onto the
/// proxy's read connection waits behind its `XREADGROUP BLOCK` (about one second).
/// `conn::call` turns a key offset into the key's slot; this test keeps it so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_go_straight_to_the_owning_node() {
    let cluster = servers::start_cluster(3).await;
    let n = cluster.nodes.len();
    let ns = "topo-routing";
    let config = config("routing", cluster.url());
    for node in &cluster.nodes {
        servers::cli(node.port, &servers::args(&["CONFIG", "RESETSTAT"]))
            .await
            .unwrap();
    }

    // A system whose request stream is on each node, and a client whose reply list is.
    let mut running = Vec::new();
    let streams = names_per_node(
        &cluster,
        1,
        |i| format!("sys-{i}"),
        |id| format!("{ns}:sys:{id}:req"),
    );
    for (k, ids) in streams.iter().enumerate() {
        let system = system_with(&ids[0], &[format!("a{k}").as_str()]).await;
        let proxy = start_proxy(&system, &config).await.unwrap();
        running.push((system, proxy));
    }
    let mut clients: Vec<Option<ProxyClient>> = (0..n).map(|_| None).collect();
    for _ in 0..200 {
        let client = ProxyClient::connect(&config).await.unwrap();
        let slot = &mut clients[cluster.node_of_key(client.reply_key())];
        if slot.is_none() {
            *slot = Some(client);
        } else {
            client.shutdown().await;
        }
        if clients.iter().all(Option::is_some) {
            break;
        }
    }
    let clients: Vec<ProxyClient> = clients
        .into_iter()
        .map(|c| c.expect("no client's reply list on some node after 200 clients"))
        .collect();

    // Each client asks each system's actor a few times; none should wait for a blocking read.
    let mut slow = Vec::new();
    for (reply_node, client) in clients.iter().enumerate() {
        for stream_node in 0..n {
            for _ in 0..3 {
                let started = Instant::now();
                assert_eq!(client.ask(format!("a{stream_node}"), Get).await, Ok(0));
                let took = started.elapsed();
                if took > Duration::from_millis(500) {
                    slow.push(format!(
                        "reply list on node {reply_node}, stream on node {stream_node}: {took:?}"
                    ));
                }
            }
        }
    }
    let mut moved = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let stats = servers::cli(node.port, &servers::args(&["INFO", "errorstats"]))
            .await
            .unwrap();
        moved.extend(
            stats
                .lines()
                .filter(|l| l.starts_with("errorstat_MOVED") || l.starts_with("errorstat_ASK"))
                .map(|l| format!("node {i}: {}", l.trim())),
        );
    }

    for (system, proxy) in running {
        proxy.shutdown().await.unwrap();
        system.shutdown(Duration::from_secs(2)).await.unwrap();
    }
    for client in clients {
        client.shutdown().await;
    }
    assert!(
        moved.is_empty() && slow.is_empty(),
        "commands were sent to nodes that do not own their keys: {moved:?}; slow asks: {slow:?}"
    );
}

/// A group and activations on `redis-cluster://`: the shared URN's key, its stream, the
/// pattern key and the activated actors' keys land on different nodes; every command the
/// members and clients send names one key, so each goes to its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_groups_and_activations() {
    let cluster = servers::start_cluster(3).await;
    let config = config("cluster-groups", cluster.url());
    let mut running = Vec::new();
    for id in ["g-1", "g-2"] {
        let system = system_with(id, &["shared"]).await;
        let proxy = start_proxy(&system, &config).await.unwrap();
        proxy.join("shared").await.unwrap();
        proxy
            .activate(
                "item:{id}",
                |_a: conclib_redis::scale::Activation| async move {
                    Ok::<_, String>(Counter::default())
                },
            )
            .await
            .unwrap();
        running.push((system, proxy));
    }
    let client = ProxyClient::connect(&config).await.unwrap();
    for i in 0..40u64 {
        assert_eq!(
            client.ask("shared", Echo(format!("e{i}"))).await.unwrap(),
            format!("e{i}")
        );
    }
    // Twelve activations, spread over keys on every node.
    for i in 0..12u64 {
        let urn = format!("item:{i}");
        assert_eq!(client.ask(urn.as_str(), Add(i + 1)).await.unwrap(), i + 1);
        assert_eq!(client.ask(urn.as_str(), Get).await.unwrap(), i + 1);
    }
    let active: usize = running.iter().map(|(_, p)| p.activations().len()).sum();
    assert_eq!(active, 12, "each URN activated once");
    for (system, proxy) in running {
        proxy.shutdown().await.unwrap();
        system.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
