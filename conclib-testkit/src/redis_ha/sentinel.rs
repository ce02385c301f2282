//! A Sentinel topology: a primary, 2 replicas and 3 sentinels, failed over on purpose.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::node::{DOWN_AFTER, HA_TIMEOUT, Node, Promotion, TempDir};
use super::probe::{cli, cut_replication, free_ports, info_field, wait_until};

/// A primary, 2 replicas and 3 sentinels (quorum 2, down after [`DOWN_AFTER`]).
pub struct Sentinel {
    /// The data servers (the primary among them; which one changes with each promotion).
    pub servers: Vec<Node>,
    /// The sentinels.
    pub sentinels: Vec<Node>,
    /// The service name the sentinels know the primary by.
    pub service: &'static str,
    dir: TempDir,
}

impl Sentinel {
    /// Starts the topology and waits until every sentinel knows both replicas and the
    /// other sentinels, and both replicas are in sync.
    pub fn start() -> Sentinel {
        let dir = TempDir::new("sentinel");
        let ports = free_ports(6);
        let service = "ha";
        let primary = ports[0];
        let servers: Vec<Node> = ports[..3]
            .iter()
            .map(|&port| {
                let mut args: Vec<OsString> = vec!["--port".into(), port.to_string().into()];
                if port != primary {
                    args.extend([
                        "--replicaof".into(),
                        "127.0.0.1".into(),
                        primary.to_string().into(),
                    ]);
                }
                Node::spawn(&dir.0, port, args)
            })
            .collect();
        for server in &servers {
            server.wait_ping();
        }
        let sentinels = ports[3..]
            .iter()
            .map(|&port| {
                let conf = dir.0.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\n\
                         sentinel resolve-hostnames no\n\
                         sentinel monitor {service} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {service} {}\n\
                         sentinel failover-timeout {service} 4000\n",
                        DOWN_AFTER.as_millis()
                    ),
                )
                .expect("write a sentinel's configuration");
                Node::spawn(&dir.0, port, vec![conf.into(), "--sentinel".into()])
            })
            .collect();
        let setup = Sentinel {
            servers,
            sentinels,
            service,
            dir,
        };
        setup.wait_settled();
        setup
    }

    /// `redis-sentinel://` URL naming the three sentinels and the service.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={}",
            self.sentinels[0].port, self.service
        );
        for s in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// The primary's port, as the first sentinel that answers names it.
    pub fn primary_port(&self) -> Result<u16, String> {
        let mut last = String::from("no sentinel");
        for s in &self.sentinels {
            match cli(
                s.port,
                &["SENTINEL", "get-master-addr-by-name", self.service],
            ) {
                Ok(out) => {
                    if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                        return Ok(port);
                    }
                    last = out;
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Waits until all sentinels agree on a primary that answers as one, with both
    /// replicas in sync with it, and each sentinel knows 2 replicas (not down) and 2 other
    /// sentinels: ready to fail over.
    pub fn wait_settled(&self) -> u16 {
        wait_until("the sentinel topology to settle", HA_TIMEOUT, || {
            let primary = self.primary_port()?;
            for s in &self.sentinels {
                let named = cli(
                    s.port,
                    &["SENTINEL", "get-master-addr-by-name", self.service],
                )?;
                if !named.ends_with(&primary.to_string()) {
                    return Err(format!("sentinel {} names {named}", s.port));
                }
                let replicas = cli(s.port, &["SENTINEL", "replicas", self.service])?;
                let healthy = replicas
                    .split("\nname\n")
                    .filter(|r| {
                        r.contains("\nslave\n")
                            && !r.contains("s_down")
                            && !r.contains("disconnected")
                    })
                    .count();
                if healthy < 2 {
                    return Err(format!(
                        "sentinel {} sees {healthy} healthy replicas",
                        s.port
                    ));
                }
                let others = cli(s.port, &["SENTINEL", "sentinels", self.service])?;
                if others.matches("\nname\n").count() + usize::from(others.starts_with("name")) < 2
                {
                    return Err(format!(
                        "sentinel {} knows too few sentinels: {others}",
                        s.port
                    ));
                }
            }
            let info = cli(primary, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() != Some("master") {
                return Err(format!("{primary} is not a primary yet"));
            }
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online < 2 {
                return Err(format!("{online} replicas online"));
            }
            Ok(primary)
        })
    }

    fn server_at(&mut self, port: u16) -> &mut Node {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of the topology")
    }

    /// Stalls every replica of the primary (SIGSTOP) and closes the primary's replication
    /// links, for `lag`, during which the primary takes writes they never see; then SIGKILLs the primary, resumes the replicas
    /// (SIGCONT) and waits until the sentinels promote one (it answers as the primary).
    /// The killed server is started again as a replica of the new primary, and the
    /// topology waits to settle before it returns.
    pub fn promote_with_lag(&mut self, lag: Duration) -> Promotion {
        let old = self.wait_settled();
        let replicas: Vec<u16> = self
            .servers
            .iter()
            .map(|s| s.port)
            .filter(|&p| p != old)
            .collect();
        if !lag.is_zero() {
            for &r in &replicas {
                self.server_at(r).signal(libc::SIGSTOP);
            }
            cut_replication(old);
            std::thread::sleep(lag);
        }
        let killed_at = Instant::now();
        self.server_at(old).kill();
        for &r in &replicas {
            self.server_at(r).signal(libc::SIGCONT);
        }
        let new_primary = wait_until("a replica's promotion", HA_TIMEOUT, || {
            let port = self.primary_port()?;
            if port == old {
                return Err("the sentinels still name the old primary".into());
            }
            let info = cli(port, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() == Some("master") {
                Ok(port)
            } else {
                Err(format!("{port} is not a primary yet"))
            }
        });
        let promoted_at = Instant::now();
        let dir = self.dir.0.clone();
        let node = self.server_at(old);
        node.args = vec![
            "--port".into(),
            old.to_string().into(),
            "--replicaof".into(),
            "127.0.0.1".into(),
            new_primary.to_string().into(),
        ];
        node.start(&dir);
        self.wait_settled();
        Promotion {
            killed_at,
            promoted_at,
            new_primary,
        }
    }
}
