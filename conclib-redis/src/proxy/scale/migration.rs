//! Live migration of an activation's in-memory state: when an activation is moved to
//! another member (a drain, a rebalance), its store's
//! [`dehydrate`](super::store::StateStore::dehydrate), called from the actor's `on_stop`,
//! leaves its state for the next activation of the URN in `{ns}:state:{urn}:carried`
//! (with the writer's token, for one minute), and the next activation's claim takes it
//! (`CLAIM_OPEN_SCRIPT`, in the step that claims the URN and makes the activation the
//! state's owner), for its [`rehydrate`](super::store::StateStore::rehydrate): the state
//! as it was in memory at the stop, saved or not. A carried state counts only for the
//! activation that follows its writer: it is taken (deleted) by the next claim, and
//! ignored when the state's owner is no longer its writer (an activation that takes no
//! carried state came in between: the Python actor host's). Not in a Redis Cluster (the
//! two keys live in different slots): there nothing is carried and the next activation
//! loads what was saved.

use std::time::Duration;

use crate::protocol::{carry_lua, hand_urn_lua};

/// How long a carried state waits for the next activation.
pub(in crate::proxy) const CARRIED_TTL: Duration = Duration::from_secs(60);

/// `KEYS[1]` = the state key, `KEYS[2]` = its carried key; `ARGV[1]` = the activation's
/// token, `ARGV[2]` = the state, `ARGV[3]` = TTL (ms). Leaves the state for the next
/// activation if this one owns the state key: 1, else 0. With `KEYS[3]` (the URN key),
/// `KEYS[4]` (the target's stream) and `ARGV[4..]` (a hand-over's arguments, as
/// `protocol::HAND_URN_SCRIPT` takes them), it also hands the URN key to the
/// member the activation moves to, in the same step: 2 when it did.
pub(in crate::proxy) const DEHYDRATE_SCRIPT: &str = concat!(
    hand_urn_lua!(),
    carry_lua!(),
    r"if KEYS[3] and hand(KEYS[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], KEYS[4], {unpack(ARGV, 9)}) == 1 then return 2 end
return 1"
);

/// The carried key of state key `state_key`.
pub(in crate::proxy) fn carried_key(state_key: &str) -> String {
    format!("{state_key}:carried")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fred::prelude::*;

    use super::{CARRIED_TTL, DEHYDRATE_SCRIPT, carried_key};
    use crate::conn::{keyed, owned};
    use crate::protocol::CLAIM_OPEN_SCRIPT;
    use crate::script::Script;

    /// The state a move carried is taken by the claim of the activation that follows its
    /// writer, once, and by no later one; one that another activation's open came between
    /// (the Python host's, which takes no carried state) is stale: the claim deletes it and
    /// returns none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_carried_state_goes_to_the_next_claim_only_and_never_stale() {
        let (daemon, client) = crate::daemon::with_client("carried", Duration::from_secs(5)).await;
        let (state, urn) = ("st:acct:1", "urn:acct:1");
        let carried = carried_key(state);
        let (claim_script, dehydrate_script) = (
            Script::new(CLAIM_OPEN_SCRIPT),
            Script::new(DEHYDRATE_SCRIPT),
        );
        let claim = |token: &str, system: &str| {
            claim_script.eval(
                &client,
                vec![owned(state), owned(urn), owned(carried.clone())],
                vec![
                    owned(token),
                    Value::Integer(60_000),
                    owned(system),
                    Value::Integer(60_000),
                ],
            )
        };
        let dehydrate = |token: &str, data: &str| {
            dehydrate_script.eval(
                &client,
                vec![owned(state), owned(carried.clone())],
                vec![
                    owned(token),
                    owned(data),
                    Value::Integer(CARRIED_TTL.as_millis() as i64),
                ],
            )
        };
        // The carried state the answer `{1, data, applied, carried}` holds.
        let carried_in = |answer: Value| -> Option<String> {
            let Value::Array(parts) = answer else {
                panic!("not claimed: {answer:?}")
            };
            assert_eq!(parts.first().and_then(Value::as_i64), Some(1), "{parts:?}");
            parts.get(3).and_then(|v| v.as_string())
        };
        let hand_to = |system: &'static str| {
            let client = &client;
            async move {
                let _: () = client.set(urn, system, None, None, false).await.unwrap();
            }
        };

        assert_eq!(carried_in(claim("a1", "s1").await.unwrap()), None);
        assert_eq!(dehydrate("a1", "41").await.unwrap(), Value::Integer(1));
        hand_to("s2").await;
        assert_eq!(
            carried_in(claim("a2", "s2").await.unwrap()).as_deref(),
            Some("41"),
            "the next activation takes what its predecessor carried"
        );
        let left: Option<String> = client.get(&carried).await.unwrap();
        assert_eq!(left, None, "taken once: deleted by the claim");
        assert_eq!(
            carried_in(claim("a2b", "s2").await.unwrap()),
            None,
            "a second claim finds nothing carried"
        );

        // Carried by a2b, then another activation opens the state without taking it.
        assert_eq!(dehydrate("a2b", "42").await.unwrap(), Value::Integer(1));
        let args = vec![owned(state), owned("owner"), owned("py-host")];
        crate::conn::call(&client, keyed("HSET"), args)
            .await
            .unwrap();
        hand_to("s3").await;
        assert_eq!(
            carried_in(claim("a3", "s3").await.unwrap()),
            None,
            "a state carried before another activation owned the state is stale"
        );
        let left: Option<String> = client.get(&carried).await.unwrap();
        assert_eq!(left, None, "the stale carried state is deleted");
        // A writer that no longer owns the state carries nothing.
        assert_eq!(dehydrate("a2b", "43").await.unwrap(), Value::Integer(0));
        daemon.shutdown().unwrap();
    }

    /// A dehydration given a hand-over hands the URN key to the member the activation
    /// moves to and appends the moved-in notice to its stream, in the step that carries
    /// the state (2); a key another system holds is not handed (the state is carried: 1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dehydration_hands_the_urn_over_only_from_its_holder() {
        let (daemon, client) =
            crate::daemon::with_client("carried-hand", Duration::from_secs(5)).await;
        let (state, urn_key, stream) = ("st:acct:7", "urn:acct:7", "sys:s2:req");
        let call = |cmd: &'static str, args: Vec<&str>| {
            let args = args.into_iter().map(owned).collect();
            crate::conn::call(&client, keyed(cmd), args)
        };
        call("HSET", vec![state, "owner", "t1"]).await.unwrap();
        call("XADD", vec![stream, "*", "init", "1"]).await.unwrap();
        let dehydrate_script = Script::new(DEHYDRATE_SCRIPT);
        let dehydrate = |holder_key: &str| {
            let keys = [state, &carried_key(state), holder_key, stream].map(owned);
            let args = [
                "t1", "7", "60000", "s1", "s2", "60000", "0", "", "v", "1", "placed", "g",
                "movedin", "acct:7",
            ]
            .map(owned);
            dehydrate_script.eval(&client, keys.to_vec(), args.to_vec())
        };
        let _: () = client.set(urn_key, "s9", None, None, false).await.unwrap();
        assert_eq!(dehydrate(urn_key).await.unwrap(), Value::Integer(1));
        let holder: Option<String> = client.get(urn_key).await.unwrap();
        assert_eq!(
            holder.as_deref(),
            Some("s9"),
            "another system's key is not handed"
        );

        let _: () = client.set(urn_key, "s1", None, None, false).await.unwrap();
        assert_eq!(dehydrate(urn_key).await.unwrap(), Value::Integer(2));
        let holder: Option<String> = client.get(urn_key).await.unwrap();
        assert_eq!(holder.as_deref(), Some("s2"), "handed to the target");
        let notices = call("XLEN", vec![stream]).await.unwrap();
        assert_eq!(
            notices,
            Value::Integer(2),
            "the notice follows the first entry"
        );
        daemon.shutdown().unwrap();
    }
}
