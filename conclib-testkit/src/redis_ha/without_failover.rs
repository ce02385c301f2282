//! Topologies with nothing to fail over: one server that persists what it acknowledged,
//! and a primary with one replica.

use std::ffi::OsString;

use super::node::{HA_TIMEOUT, Node, TempDir};
use super::probe::{cli, free_ports, wait_until};

/// One server that keeps what it acknowledged across a SIGKILL: an append-only file flushed
/// before each write is answered (`appendonly yes`, `appendfsync always`), started again on
/// the same port and files by [`restart`](Persistent::restart).
pub struct Persistent {
    /// The server.
    pub server: Node,
    dir: TempDir,
}

impl Persistent {
    /// Starts it and waits until it answers.
    pub fn start() -> Persistent {
        let dir = TempDir::new("persistent");
        let port = free_ports(1)[0];
        let args = [
            "--port",
            &port.to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let server = Node::spawn(&dir.0, port, args);
        server.wait_ping();
        Persistent { server, dir }
    }

    /// SIGKILL, then the same server again on its port and files; returns once it answers
    /// `PING` (its append-only file loaded).
    pub fn restart(&mut self) {
        self.server.kill();
        self.server.start(&self.dir.0);
        self.server.wait_ping();
    }

    /// `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.server.port)
    }
}

/// A primary with one replica, nothing to fail over: to measure what waiting for a replica
/// costs.
pub struct Replicated {
    /// The primary, then the replica.
    pub servers: Vec<Node>,
    _dir: TempDir,
}

impl Replicated {
    /// Starts both and waits until the replica is in sync.
    pub fn start() -> Replicated {
        let dir = TempDir::new("replicated");
        let ports = free_ports(2);
        let primary = Node::spawn(
            &dir.0,
            ports[0],
            vec!["--port".into(), ports[0].to_string().into()],
        );
        let replica = Node::spawn(
            &dir.0,
            ports[1],
            vec![
                "--port".into(),
                ports[1].to_string().into(),
                "--replicaof".into(),
                "127.0.0.1".into(),
                ports[0].to_string().into(),
            ],
        );
        primary.wait_ping();
        replica.wait_ping();
        wait_until("the replica to be in sync", HA_TIMEOUT, || {
            let info = cli(ports[0], &["INFO", "replication"])?;
            if info
                .lines()
                .any(|l| l.starts_with("slave0") && l.contains("state=online"))
            {
                Ok(())
            } else {
                Err(info)
            }
        });
        Replicated {
            servers: vec![primary, replica],
            _dir: dir,
        }
    }

    /// `redis://` URL of the primary.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.servers[0].port)
    }
}
