//! The configuration's tests: its environment variables, its URLs and the TLS CA file.

use super::*;
use std::collections::HashMap;

#[test]
fn from_lookup_reads_variables() {
    let vars: HashMap<&str, &str> = [
        ("CONCLIB_REDIS_URL", "redis://u:pw@h:7000/2"),
        ("CONCLIB_REDIS_NAMESPACE", "shop"),
        ("CONCLIB_REDIS_TIMEOUT_MS", "1500"),
        ("CONCLIB_REDIS_PORT", "7001"),
        ("CONCLIB_REDIS_SYSTEM_ID", "web-1"),
        ("CONCLIB_REDIS_TLS_CA", "/etc/redis/ca.pem"),
    ]
    .into_iter()
    .collect();
    let config = ProxyConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    assert_eq!(config.url, "redis://u:pw@h:7000/2");
    assert_eq!(config.namespace, "shop");
    assert_eq!(config.ask_timeout, Duration::from_millis(1500));
    assert_eq!(config.server_port, Some(7001));
    assert_eq!(config.system_id.as_deref(), Some("web-1"));
    assert_eq!(
        config.tls_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/redis/ca.pem"))
    );
    assert!(!format!("{config:?}").contains("pw"));
}

#[test]
fn from_lookup_rejects_bad_values() {
    let err =
        ProxyConfig::from_lookup(|k| (k == "CONCLIB_REDIS_TIMEOUT_MS").then(|| "soon".to_owned()))
            .unwrap_err();
    assert_eq!(err.var, "CONCLIB_REDIS_TIMEOUT_MS");
    let err = ProxyConfig::from_lookup(|k| (k == "CONCLIB_REDIS_CODEC").then(|| "json".to_owned()))
        .unwrap_err();
    assert_eq!(err.var, "CONCLIB_REDIS_CODEC");
    assert!(
        ProxyConfig::from_lookup(|k| (k == "CONCLIB_REDIS_NAMESPACE").then(|| "a b".to_owned()))
            .is_err()
    );
}

#[test]
fn urls_parse() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://user:pw@127.0.0.1:6379/1",
        "redis-cluster://127.0.0.1:30001?node=127.0.0.1:30002",
        "redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=mymaster&node=127.0.0.1:26380",
    ] {
        ProxyConfig::new(url)
            .builder::<()>(Duration::from_secs(1))
            .unwrap();
    }
    let tls = ProxyConfig::new("rediss://127.0.0.1:6380").builder::<()>(Duration::from_secs(1));
    assert_eq!(tls.is_ok(), cfg!(feature = "tls"));
    // A CA file needs TLS: the feature, and a TLS URL.
    let err = ProxyConfig::new("redis://127.0.0.1:6380")
        .with_tls_ca_file("/nonexistent/ca.pem")
        .builder::<()>(Duration::from_secs(1))
        .unwrap_err();
    let expected = if cfg!(feature = "tls") {
        "does not use TLS"
    } else {
        "needs TLS"
    };
    assert!(
        matches!(&err, ProxyError::Config(m) if m.contains(expected)),
        "{err:?}"
    );
    let err = ProxyConfig::new("rediss://127.0.0.1:6380")
        .with_tls_ca_file("/nonexistent/ca.pem")
        .builder::<()>(Duration::from_secs(1))
        .unwrap_err();
    let expected = if cfg!(feature = "tls") {
        "cannot use TLS CA file /nonexistent/ca.pem"
    } else {
        "needs TLS"
    };
    assert!(
        matches!(&err, ProxyError::Config(m) if m.contains(expected)),
        "{err:?}"
    );
    assert_eq!(redact("redis://user:pw@h:1"), "redis://user:***@h:1");
    assert_eq!(redact("redis://h:1"), "redis://h:1");
}
