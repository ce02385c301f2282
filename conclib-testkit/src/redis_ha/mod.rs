//! Real Redis high-availability topologies on loopback, to fail over on purpose: a
//! [`Sentinel`] set-up (a primary, 2 replicas, 3 sentinels) and a [`Cluster`] (3 primaries,
//! 3 replicas), each server a `redis-server` process of its own on free ports of 127.0.0.1,
//! without persistence, in a temporary directory; and one [`Persistent`] server, restarted
//! on purpose with what it acknowledged.
//!
//! Operations: [`Sentinel::promote_with_lag`] / [`Cluster::promote_with_lag`] stall the
//! replicas (SIGSTOP) and close the primary's replication links for a while, SIGKILL the
//! primary, resume the replicas (SIGCONT) and
//! wait until one of them is the primary: a promotion that loses the primary's last writes,
//! as asynchronous replication does when a replica lags. The killed server is started again
//! as a replica, so a topology can fail over again and again. Every process is killed by
//! its PID and reaped when the topology drops (also during a panic), and dies with the
//! process that started it otherwise (`PR_SET_PDEATHSIG`). Every wait is polled against a
//! deadline, never assumed after a sleep.
//!
//! `redis-server` is `CONCLIB_REDIS_SERVER` or the one on `PATH`; `redis-cli` is on `PATH`.
//! With `CONCLIB_HA_KEEP_LOGS` set, a topology's directory (the servers' logs and
//! `nodes-*.conf`) is kept when it drops, its path printed on standard error.

mod cluster;
mod node;
mod probe;
mod sentinel;
mod without_failover;

pub use cluster::Cluster;
pub use node::{DOWN_AFTER, HA_TIMEOUT, Node, Promotion};
pub use probe::{cli, cluster_url, free_ports, wait_until};
pub use sentinel::Sentinel;
pub use without_failover::{Persistent, Replicated};
