//! A Redis Cluster of 3 primaries with a replica each, failed over on purpose.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::node::{DOWN_AFTER, HA_TIMEOUT, Node, Promotion, TempDir};
use super::probe::{
    cli, cli_within, cluster_url, cut_replication, free_ports, info_field, wait_until,
};

/// One row of `CLUSTER NODES`.
#[derive(Debug)]
struct Row {
    port: u16,
    primary: bool,
    /// Its primary's id (`-` for a primary).
    primary_id: String,
    id: String,
    has_slots: bool,
}

/// A cluster of 3 primaries with a replica each (node timeout [`DOWN_AFTER`]).
pub struct Cluster {
    /// Its nodes; which are primaries changes with each promotion.
    pub nodes: Vec<Node>,
    buses: Vec<u16>,
    dir: TempDir,
}

impl Cluster {
    /// Starts 6 cluster-enabled servers, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Cluster {
        let dir = TempDir::new("cluster");
        let ports = free_ports(12);
        let (ports, buses) = (ports[..6].to_vec(), ports[6..].to_vec());
        let nodes: Vec<Node> = ports
            .iter()
            .zip(&buses)
            .map(|(&port, &bus)| {
                let args: Vec<OsString> = [
                    "--port".to_owned(),
                    port.to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-port".into(),
                    bus.to_string(),
                    "--cluster-config-file".into(),
                    dir.0
                        .join(format!("nodes-{port}.conf"))
                        .display()
                        .to_string(),
                    "--cluster-node-timeout".into(),
                    DOWN_AFTER.as_millis().to_string(),
                    // A replica stalled on purpose may still take over.
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                ]
                .into_iter()
                .map(OsString::from)
                .collect();
                Node::spawn(&dir.0, port, args)
            })
            .collect();
        for node in &nodes {
            node.wait_ping();
        }
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend([
            "--cluster-replicas".into(),
            "1".into(),
            "--cluster-yes".into(),
        ]);
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        // `--cluster create` waits for the nodes to join, seconds on a loaded machine: cut
        // short, it left nodes without their primary (every one a primary, never settling).
        if let Err(e) = cli_within(ports[0], &create, HA_TIMEOUT) {
            eprintln!("redis-cli --cluster create: {e}");
        }
        let cluster = Cluster { nodes, buses, dir };
        cluster.wait_settled();
        cluster
    }

    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        cluster_url(self.nodes.iter().map(|n| n.port))
    }

    /// The `CLUSTER NODES` rows of the nodes not failed, as `port` sees them.
    fn rows(&self, port: u16) -> Result<Vec<Row>, String> {
        let listing = cli(port, &["CLUSTER", "NODES"])?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = f.get(2)?;
                if flags.contains("fail") {
                    return None;
                }
                Some(Row {
                    port,
                    primary: flags.contains("master"),
                    primary_id: (*f.get(3)?).to_owned(),
                    id: (*f.first()?).to_owned(),
                    has_slots: f.len() > 8,
                })
            })
            .collect())
    }

    /// Waits until every running node reports `cluster_state:ok`, sees 3 primaries with
    /// slots each with a replica; returns the primaries' ports.
    pub fn wait_settled(&self) -> Vec<u16> {
        wait_until("the cluster to settle", HA_TIMEOUT, || {
            let mut primaries = Vec::new();
            for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                let info = cli(node.port, &["CLUSTER", "INFO"])?;
                if !info.contains("cluster_state:ok") {
                    return Err(format!("{}: {}", node.port, info.replace("\r\n", " ")));
                }
                let rows = self.rows(node.port)?;
                let masters: Vec<&Row> = rows.iter().filter(|r| r.primary && r.has_slots).collect();
                if masters.len() != 3 || rows.len() != 6 {
                    return Err(format!("{} sees {rows:?}", node.port));
                }
                for m in &masters {
                    if !rows.iter().any(|r| !r.primary && r.primary_id == m.id) {
                        return Err(format!(
                            "{} sees primary {} without a replica",
                            node.port, m.port
                        ));
                    }
                }
                primaries = masters.iter().map(|m| m.port).collect();
            }
            // Each replica in sync with its primary.
            for &p in &primaries {
                let info = cli(p, &["INFO", "replication"])?;
                if !info
                    .lines()
                    .any(|l| l.starts_with("slave0") && l.contains("state=online"))
                {
                    return Err(format!("{p}'s replica not online"));
                }
            }
            primaries.sort_unstable();
            Ok(primaries)
        })
    }

    /// The port of the primary serving `slot`.
    pub fn primary_of_slot(&self, slot: u16) -> Result<u16, String> {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let Ok(listing) = cli(node.port, &["CLUSTER", "NODES"]) else {
                continue;
            };
            for line in listing.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if !f
                    .get(2)
                    .is_some_and(|flags| flags.contains("master") && !flags.contains("fail"))
                {
                    continue;
                }
                for range in f.iter().skip(8) {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                        && (a..=b).contains(&slot)
                    {
                        let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next());
                        return port
                            .and_then(|p| p.parse().ok())
                            .ok_or_else(|| format!("bad row {line}"));
                    }
                }
            }
            return Err(format!("no primary serves slot {slot}"));
        }
        Err("no node answers".into())
    }

    fn node_at(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// Stalls the replica of the primary serving `slot` (SIGSTOP) and closes the primary's
    /// replication link, for `lag` (writes it takes then reach no replica), SIGKILLs the
    /// primary, resumes the replica and waits until it serves the slot. The killed node is
    /// started again (it rejoins as a replica), and the cluster waits to settle.
    pub fn promote_with_lag(&mut self, slot: u16, lag: Duration) -> Promotion {
        self.wait_settled();
        let old = self
            .primary_of_slot(slot)
            .expect("a primary serves the slot");
        let rows = self.rows(old).expect("CLUSTER NODES");
        let old_id = rows
            .iter()
            .find(|r| r.port == old)
            .map(|r| r.id.clone())
            .expect("own row");
        let replica = rows
            .iter()
            .find(|r| r.primary_id == old_id)
            .map(|r| r.port)
            .expect("the primary has a replica");
        if !lag.is_zero() {
            self.node_at(replica).signal(libc::SIGSTOP);
            cut_replication(old);
            std::thread::sleep(lag);
        }
        let killed_at = Instant::now();
        self.node_at(old).kill();
        self.node_at(replica).signal(libc::SIGCONT);
        let new_primary = wait_until("the replica's promotion", HA_TIMEOUT, || {
            let info = cli(replica, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() == Some("master") {
                Ok(replica)
            } else {
                Err(format!("{replica} is not a primary yet"))
            }
        });
        let promoted_at = Instant::now();
        let dir = self.dir.0.clone();
        self.node_at(old).start(&dir);
        self.wait_settled();
        Promotion {
            killed_at,
            promoted_at,
            new_primary,
        }
    }

    /// The bus ports (the cluster's own links).
    pub fn bus_ports(&self) -> &[u16] {
        &self.buses
    }
}
