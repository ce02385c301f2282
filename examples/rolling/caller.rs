//! The callers of the roll: processes that ask and tell the accounts without pause and
//! print what became of each call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib::AskError;
use conclib::redis::codec::MsgPack;
use conclib::redis::{ProxyClient, ProxyConfig};

use super::{Add, AddV2, Audit, NAMESPACE, Total, micros_now};
use crate::BoxError;

/// `caller URL SEED URNS IN_FLIGHT TIMEOUT_MS RATE BUILD`: asks and tells `acct:0..URNS`,
/// `IN_FLIGHT` at a time, `RATE` a second (`0`: without pause; an ask is timed from when
/// it was due), in MessagePack, until its standard input closes, then prints one
/// line per call (`A urn start_us end_us ok|timeout|decode|<error>`, `T urn ok|<error>`),
/// one per stall of its runtime (`S at_us late_us`, `waits.rs`) and `DONE`. A build 2 caller tells build 2's `Add` (with its note), and once a line
/// `v2` comes on its standard input (a build 2 member serves), asks `Audit` every other
/// ask.
pub async fn caller(args: &[String]) -> Result<(), BoxError> {
    let [url, seed, urns, in_flight, timeout_ms, rate, build] = args else {
        return Err("caller URL SEED URNS IN_FLIGHT TIMEOUT_MS RATE BUILD".into());
    };
    let (in_flight, rate): (u64, u32) = (in_flight.parse()?, rate.parse()?);
    // Each of the `in_flight` workers sends one call every `in_flight / rate` seconds, the
    // workers' due times spread evenly.
    let pace = (rate > 0).then(|| Duration::from_secs_f64(in_flight as f64 / f64::from(rate)));
    let paced_from = tokio::time::Instant::now();
    let (seed, urns): (u64, u64) = (seed.parse()?, urns.parse()?);
    let v2_caller = build == "2";
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v2_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (stop, v2_up) = (stop.clone(), v2_up.clone());
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.trim() == "v2" {
                    v2_up.store(true, Ordering::Relaxed);
                }
                line.clear();
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let timeout = Duration::from_millis(timeout_ms.parse()?);
    let client = ProxyClient::connect(
        &ProxyConfig::new(url.as_str())
            .with_namespace(NAMESPACE)
            .with_codec(MsgPack)
            .with_ask_timeout(timeout),
    )
    .await?;
    // CPU this process was not given, beside its asks (`waits.rs`).
    let stalls = tokio::spawn(super::waits::watch_stalls(stop.clone()));
    let mut workers = Vec::new();
    for w in 0..in_flight {
        let (client, stop, v2_up) = (client.clone(), stop.clone(), v2_up.clone());
        workers.push(tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut k = 0u64;
            let mut due = pace.map(|p| paced_from + p.mul_f64(w as f64 / in_flight as f64));
            while !stop.load(Ordering::Relaxed) {
                // How late this call is sent: a paced ask is timed from when it was due.
                let mut late_us = 0;
                if let (Some(at), Some(p)) = (due.as_mut(), pace) {
                    tokio::time::sleep_until(*at).await;
                    late_us = at.elapsed().as_micros() as u64;
                    *at += p;
                }
                k += 1;
                let u = (seed * 101 + w * 37 + k * 11) % urns;
                let urn = format!("acct:{u}");
                if k.is_multiple_of(4) {
                    let added = if v2_caller {
                        let note = Some(format!("from {seed}"));
                        client.ask(urn.as_str(), AddV2 { note }).await
                    } else {
                        client.ask(urn.as_str(), Add {}).await
                    };
                    let outcome = match added {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => outcome_of(&e),
                    };
                    lines.push(format!("T {u} {outcome}"));
                    continue;
                }
                let start = micros_now() - late_us;
                let audit = v2_caller && k.is_multiple_of(2) && v2_up.load(Ordering::Relaxed);
                let asked = if audit {
                    client.ask(urn.as_str(), Audit).await
                } else {
                    client.ask(urn.as_str(), Total).await
                };
                let outcome = match asked {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => outcome_of(&e),
                };
                lines.push(format!("A {u} {start} {} {outcome}", micros_now()));
            }
            lines
        }));
    }
    for w in workers {
        for line in w.await? {
            println!("{line}");
        }
    }
    for (at, late) in stalls.await? {
        println!("S {at} {late}");
    }
    println!("DONE");
    client.shutdown().await;
    Ok(())
}

/// A call's error as one word: a request refused as undecodable or not decodable by any
/// member (`UnsupportedVersion`), or a reply the caller could not decode, is `decode`.
fn outcome_of<E: std::fmt::Debug>(e: &AskError<E>) -> String {
    match e {
        AskError::Timeout(_) => "timeout".into(),
        AskError::Codec(_) | AskError::UnsupportedVersion { .. } => "decode".into(),
        other => format!("{other:?}").replace(" ", "_"),
    }
}
