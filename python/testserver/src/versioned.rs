//! `py:ver:{id}` (served with `--build 1` or `--build 2`): a ledger of two builds, for
//! `python/tests/test_versions.py`. Build 2 adds an optional field to `Deposit` (its
//! version 2) and a new message, `Audit`; answers name the server's system id, so that a
//! test sees which build answered.

use conclib::{actor, message};
use serde::{Deserialize, Serialize};

/// Build 1's `Deposit`: adds `n`.
#[message(name = "Deposit", response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositV1 {
    /// How much.
    pub n: u64,
}

/// Build 2's `Deposit`: an optional note added (counted as one more when present).
#[message(name = "Deposit", version = 2, response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositV2 {
    /// How much.
    pub n: u64,
    /// New in version 2.
    pub note: Option<String>,
}

/// The total, and the system that answered.
#[message(name = "Balance", response = (u64, String))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance;

/// New in build 2: the system that answered.
#[message(name = "Audit", response = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Audit;

/// Build 1.
#[actor]
pub struct LedgerV1 {
    /// The deposits' sum.
    pub total: u64,
    /// The serving system's id.
    pub system: String,
}

#[actor]
impl LedgerV1 {
    /// Adds.
    #[handle(remote)]
    fn deposit(&mut self, d: DepositV1) -> u64 {
        self.total += d.n;
        self.total
    }

    /// Reads.
    #[handle(remote)]
    fn balance(&mut self, _: Balance) -> (u64, String) {
        (self.total, self.system.clone())
    }
}

/// Build 2.
#[actor]
pub struct LedgerV2 {
    /// The deposits' sum.
    pub total: u64,
    /// The serving system's id.
    pub system: String,
}

#[actor]
impl LedgerV2 {
    /// Adds (one more with a note).
    #[handle(remote)]
    fn deposit(&mut self, d: DepositV2) -> u64 {
        self.total += d.n + u64::from(d.note.is_some());
        self.total
    }

    /// Reads.
    #[handle(remote)]
    fn balance(&mut self, _: Balance) -> (u64, String) {
        (self.total, self.system.clone())
    }

    /// Who answered.
    #[handle(remote)]
    fn audit(&mut self, _: Audit) -> String {
        self.system.clone()
    }
}
