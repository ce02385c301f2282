//! How a [`ProxyConfig`](super::ProxyConfig) becomes Redis connections: fred's builder
//! from the URL (TLS, and the CA file it trusts), the connect and command timeouts and the
//! reconnection pauses; and the URL as it may be shown, its password hidden. Apart from the
//! configuration itself because it is fred's side of it: what fred is told, not what a user
//! sets.

use std::path::Path;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Builder;
use fred::types::config::{TcpConfig, UnresponsiveConfig};

use crate::conn::Connecting;
use crate::error::ProxyError;

/// A fred builder for connections to `url`, trusting the CA certificates of `tls_ca_file`
/// (when set) instead of the system's roots; each connection made within `connecting`, each
/// command within `command_timeout`.
pub(super) fn builder<E>(
    url: &str,
    tls_ca_file: Option<&Path>,
    connecting: Connecting,
    command_timeout: Duration,
) -> Result<Builder, ProxyError<E>> {
    let lower = url.to_ascii_lowercase();
    if (lower.starts_with("rediss") || lower.starts_with("valkeys")) && !cfg!(feature = "tls") {
        return Err(ProxyError::Config(format!(
            "{} needs TLS: enable the `tls` feature of conclib-redis",
            redact(url)
        )));
    }
    let mut config = Config::from_url(url)
        .map_err(|e| ProxyError::Config(format!("cannot use Redis URL {}: {e}", redact(url))))?;
    if let Some(ca) = tls_ca_file {
        trust_ca(&mut config, url, ca)?;
    }
    config.fail_fast = true;
    let mut builder = Builder::from_config(config);
    let connect_timeout = connecting.timeout;
    builder
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = connect_timeout;
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(command_timeout + Duration::from_secs(5)),
                interval: Duration::from_secs(1),
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            20,
            u32::try_from(connecting.max_pause.as_millis())
                .unwrap_or(u32::MAX)
                .max(20),
            2,
        ));
    Ok(builder)
}

/// Makes the TLS connections of `config` (to `url`) trust the CA certificates of `ca` only.
#[cfg(feature = "tls")]
fn trust_ca<E>(config: &mut Config, url: &str, ca: &Path) -> Result<(), ProxyError<E>> {
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::{ClientConfig, RootCertStore};
    use std::fmt;

    if config.tls.is_none() {
        return Err(ProxyError::Config(format!(
            "tls_ca_file {} is set but {} does not use TLS (rediss://)",
            ca.display(),
            redact(url)
        )));
    }
    let unusable = |e: &dyn fmt::Display| {
        ProxyError::Config(format!("cannot use TLS CA file {}: {e}", ca.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| unusable(&e))? {
        roots
            .add(cert.map_err(|e| unusable(&e))?)
            .map_err(|e| unusable(&e))?;
    }
    if roots.is_empty() {
        return Err(unusable(&"it holds no PEM certificate"));
    }
    let tls = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.tls = Some(fred::types::config::TlsConnector::from(tls).into());
    Ok(())
}

/// Without the `tls` feature there is no TLS connection to trust a CA for.
#[cfg(not(feature = "tls"))]
fn trust_ca<E>(_config: &mut Config, _url: &str, ca: &Path) -> Result<(), ProxyError<E>> {
    Err(ProxyError::Config(format!(
        "tls_ca_file {} needs TLS: enable the `tls` feature of conclib-redis",
        ca.display()
    )))
}

/// The URL with its password replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
