//! What Redis keeps across its own restart: its persistence settings, read once when a
//! proxy starts or a client connects, and what they mean for the tells Redis accepted.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conn::{self, as_bytes, s};

/// When Redis flushes its append-only file to disk (`appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fsync {
    /// `appendfsync always`: before a write is answered.
    Always,
    /// `appendfsync everysec` (Redis's default): about once a second, in the background.
    #[serde(rename = "everysec")]
    EverySec,
    /// `appendfsync no`: when the operating system chooses to.
    No,
    /// Not known: `CONFIG` was refused, and `INFO` does not say.
    Unknown,
}

/// How the Redis that a proxy or client talks to persists what it holds, as read when the
/// proxy started ([`ProxyHandle::persistence`](crate::ProxyHandle::persistence)) or the
/// client connected ([`ProxyClient::persistence`](crate::ProxyClient::persistence)), from
/// `CONFIG GET appendonly appendfsync save`, or from `INFO persistence` where `CONFIG` is
/// refused (an ACL user without `+config`, a managed Redis that renamed it). In a cluster,
/// the settings of the one node that answered.
///
/// A tell returns once Redis holds it; what a restart of Redis keeps of the tells it held
/// and nobody handled yet is [`tell_loss`](Self::tell_loss).
///
/// ```
/// use conclib_redis::durability::{Fsync, Persistence, TellLoss};
///
/// let aof = Persistence::AppendOnly { fsync: Fsync::Always };
/// assert!(aof.tells_survive_restart());
/// assert_eq!(aof.tell_loss(), TellLoss::Nothing);
///
/// assert!(!Persistence::None.tells_survive_restart());
/// assert_eq!(Persistence::None.tell_loss(), TellLoss::All);
/// assert_eq!(Persistence::default(), Persistence::Unknown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Persistence {
    /// `appendonly yes`: every write is appended to a file, flushed to disk as `fsync` says.
    AppendOnly {
        /// When the file is flushed to disk.
        fsync: Fsync,
    },
    /// `appendonly no` with RDB snapshot points (`save` not empty): Redis writes its whole
    /// data set to disk now and then.
    SnapshotsOnly,
    /// `appendonly no` and no snapshot points (`save ""`): a restarted Redis starts empty.
    None,
    /// `appendonly no`, read from `INFO` (`CONFIG` was refused): whether Redis takes RDB
    /// snapshots is not known.
    AppendOnlyOff,
    /// Neither `CONFIG` nor `INFO` answered (in time).
    #[default]
    Unknown,
}

/// What a crash or restart of Redis may lose of the tells it accepted (and of every other
/// write): from [`Persistence::tell_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TellLoss {
    /// Nothing: each write is on disk before Redis answers it (`appendfsync always`).
    Nothing,
    /// Writes of about the last second (two at worst) if Redis or its machine crashes
    /// (`appendfsync everysec`).
    LastSecond,
    /// Writes the operating system had not flushed to disk yet, if Redis's machine crashes
    /// (`appendfsync no`).
    Unflushed,
    /// Every write since the last RDB snapshot (all of them, if Redis takes none).
    SinceLastSnapshot,
    /// All of them: a restarted Redis starts empty.
    All,
    /// Not known: the settings could not be read, or the append-only file's fsync policy
    /// could not.
    Unknown,
}

impl Persistence {
    /// What a crash or restart of Redis may lose of the tells it accepted.
    #[must_use]
    pub fn tell_loss(&self) -> TellLoss {
        match self {
            Persistence::AppendOnly {
                fsync: Fsync::Always,
            } => TellLoss::Nothing,
            Persistence::AppendOnly {
                fsync: Fsync::EverySec,
            } => TellLoss::LastSecond,
            Persistence::AppendOnly { fsync: Fsync::No } => TellLoss::Unflushed,
            Persistence::AppendOnly {
                fsync: Fsync::Unknown,
            }
            | Persistence::Unknown => TellLoss::Unknown,
            Persistence::SnapshotsOnly | Persistence::AppendOnlyOff => TellLoss::SinceLastSnapshot,
            Persistence::None => TellLoss::All,
        }
    }

    /// Whether every tell Redis accepted is known to survive a crash or restart of Redis:
    /// only with `appendonly yes` and `appendfsync always`.
    #[must_use]
    pub fn tells_survive_restart(&self) -> bool {
        self.tell_loss() == TellLoss::Nothing
    }

    /// What the start-up warning says when tells can be lost (or it is not known whether
    /// they can), `None` when they survive.
    #[must_use]
    pub fn warning(&self) -> Option<String> {
        let loss = match self.tell_loss() {
            TellLoss::Nothing => return None,
            TellLoss::LastSecond => {
                "a crash of Redis or of its machine can lose the tells of about the last second"
            }
            TellLoss::Unflushed => {
                "a crash of Redis's machine can lose the tells its operating system had not \
                 written to disk yet"
            }
            TellLoss::SinceLastSnapshot => {
                "a restart of Redis can lose every tell accepted since its last RDB snapshot"
            }
            TellLoss::All => "a restart of Redis loses every tell it holds",
            TellLoss::Unknown => "whether a restart of Redis can lose accepted tells is not known",
        };
        Some(format!(
            "Redis persistence: {self}: {loss}; for none to be lost, set \
             `appendonly yes` and `appendfsync always`"
        ))
    }

    /// Reads the settings of the Redis `client` talks to, in one round trip bounded by
    /// `timeout`: `CONFIG GET appendonly appendfsync save` and `INFO persistence` pipelined,
    /// the second used when the first is refused. Never fails: [`Persistence::Unknown`].
    pub(crate) async fn read(client: &Client, timeout: Duration) -> Persistence {
        let pipeline = client.pipeline();
        let _ = conn::call(
            &pipeline,
            conn::unkeyed("CONFIG"),
            vec![s("GET"), s("appendonly"), s("appendfsync"), s("save")],
        )
        .await;
        let _ = conn::call(&pipeline, conn::unkeyed("INFO"), vec![s("persistence")]).await;
        let Ok(mut answers) = tokio::time::timeout(timeout, pipeline.try_all::<Value>()).await
        else {
            return Persistence::Unknown;
        };
        let info = answers.pop();
        let config = answers.pop();
        if let Some(Ok(config)) = config
            && let Some(found) = Persistence::from_config(&config)
        {
            return found;
        }
        match info {
            Some(Ok(info)) => as_bytes(&info)
                .and_then(|b| Persistence::from_info(&String::from_utf8_lossy(b)))
                .unwrap_or(Persistence::Unknown),
            _ => Persistence::Unknown,
        }
    }

    /// From the answer to `CONFIG GET appendonly appendfsync save` (an array of names and
    /// values, or a map); `None` if it lacks `appendonly`.
    fn from_config(answer: &Value) -> Option<Persistence> {
        let text = |v: &Value| as_bytes(v).map(|b| String::from_utf8_lossy(b).into_owned());
        let pairs: Vec<(String, String)> = match answer {
            Value::Array(items) => items
                .chunks_exact(2)
                .filter_map(|p| Some((text(&p[0])?, text(&p[1])?)))
                .collect(),
            Value::Map(map) => map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), text(v)?)))
                .collect(),
            _ => return None,
        };
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        };
        let appendonly = get("appendonly")?;
        Some(if appendonly == "yes" {
            let fsync = match get("appendfsync").as_deref() {
                Some("always") => Fsync::Always,
                Some("everysec") => Fsync::EverySec,
                Some("no") => Fsync::No,
                _ => Fsync::Unknown,
            };
            Persistence::AppendOnly { fsync }
        } else if get("save").is_some_and(|save| !save.is_empty()) {
            Persistence::SnapshotsOnly
        } else if get("save").is_some() {
            Persistence::None
        } else {
            Persistence::AppendOnlyOff
        })
    }

    /// From the text of `INFO persistence`; `None` if it lacks `aof_enabled`.
    fn from_info(text: &str) -> Option<Persistence> {
        let enabled = text
            .lines()
            .find_map(|l| l.strip_prefix("aof_enabled:"))?
            .trim();
        Some(match enabled {
            "1" => Persistence::AppendOnly {
                fsync: Fsync::Unknown,
            },
            "0" => Persistence::AppendOnlyOff,
            _ => return None,
        })
    }

    /// Logs [`warning`](Self::warning) at WARN, the first time in this process that a proxy
    /// started or a client connected to a Redis that can lose tells.
    pub(crate) fn warn_once(&self) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if let Some(warning) = self.warning()
            && !WARNED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(persistence = %self, "{warning}");
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
            Fsync::Unknown => "unknown",
        })
    }
}

impl fmt::Display for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persistence::AppendOnly { fsync } => {
                write!(f, "appendonly yes, appendfsync {fsync}")
            }
            Persistence::SnapshotsOnly => f.write_str("appendonly no, RDB snapshots only"),
            Persistence::None => f.write_str("appendonly no, no RDB snapshots"),
            Persistence::AppendOnlyOff => f.write_str("appendonly no (RDB snapshots not known)"),
            Persistence::Unknown => f.write_str("not known"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Value {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [Value::from(*k), Value::from(*v)])
                .collect(),
        )
    }

    #[test]
    fn config_answers_are_read() {
        let read = |pairs: &[(&str, &str)]| Persistence::from_config(&config(pairs));
        assert_eq!(
            read(&[
                ("appendonly", "yes"),
                ("appendfsync", "always"),
                ("save", "")
            ]),
            Some(Persistence::AppendOnly {
                fsync: Fsync::Always
            })
        );
        assert_eq!(
            read(&[("appendfsync", "everysec"), ("appendonly", "yes")]),
            Some(Persistence::AppendOnly {
                fsync: Fsync::EverySec
            })
        );
        assert_eq!(
            read(&[
                ("appendonly", "no"),
                ("appendfsync", "always"),
                ("save", "3600 1 300 100")
            ]),
            Some(Persistence::SnapshotsOnly)
        );
        assert_eq!(
            read(&[("appendonly", "no"), ("save", "")]),
            Some(Persistence::None)
        );
        assert_eq!(
            read(&[("appendonly", "no")]),
            Some(Persistence::AppendOnlyOff)
        );
        assert_eq!(read(&[]), None);
        assert_eq!(Persistence::from_config(&Value::Null), None);
    }

    #[test]
    fn info_answers_are_read() {
        let info = "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n";
        assert_eq!(
            Persistence::from_info(info),
            Some(Persistence::AppendOnly {
                fsync: Fsync::Unknown
            })
        );
        assert_eq!(
            Persistence::from_info("aof_enabled:0\r\n"),
            Some(Persistence::AppendOnlyOff)
        );
        assert_eq!(Persistence::from_info("loading:0\r\n"), None);
    }

    #[test]
    fn only_aof_with_fsync_always_keeps_every_tell() {
        for (p, loss) in [
            (
                Persistence::AppendOnly {
                    fsync: Fsync::Always,
                },
                TellLoss::Nothing,
            ),
            (
                Persistence::AppendOnly {
                    fsync: Fsync::EverySec,
                },
                TellLoss::LastSecond,
            ),
            (
                Persistence::AppendOnly { fsync: Fsync::No },
                TellLoss::Unflushed,
            ),
            (
                Persistence::AppendOnly {
                    fsync: Fsync::Unknown,
                },
                TellLoss::Unknown,
            ),
            (Persistence::SnapshotsOnly, TellLoss::SinceLastSnapshot),
            (Persistence::AppendOnlyOff, TellLoss::SinceLastSnapshot),
            (Persistence::None, TellLoss::All),
            (Persistence::Unknown, TellLoss::Unknown),
        ] {
            assert_eq!(p.tell_loss(), loss, "{p}");
            assert_eq!(p.tells_survive_restart(), loss == TellLoss::Nothing, "{p}");
            assert_eq!(p.warning().is_none(), loss == TellLoss::Nothing, "{p}");
        }
    }

    #[test]
    fn the_warning_names_the_settings_and_the_loss() {
        assert_eq!(
            Persistence::None.warning().as_deref(),
            Some(
                "Redis persistence: appendonly no, no RDB snapshots: a restart of Redis loses \
                 every tell it holds; for none to be lost, set `appendonly yes` and \
                 `appendfsync always`"
            )
        );
    }

    #[test]
    fn json_names_the_mode() {
        let json = |p: Persistence| serde_json::to_string(&p).unwrap();
        assert_eq!(
            json(Persistence::AppendOnly {
                fsync: Fsync::EverySec
            }),
            r#"{"mode":"append_only","fsync":"everysec"}"#
        );
        assert_eq!(json(Persistence::None), r#"{"mode":"none"}"#);
        let back: Persistence =
            serde_json::from_str(r#"{"mode":"append_only","fsync":"always"}"#).unwrap();
        assert_eq!(
            back,
            Persistence::AppendOnly {
                fsync: Fsync::Always
            }
        );
    }
}
