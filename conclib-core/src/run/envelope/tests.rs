//! Envelopes: inline or boxed payloads, stamps, drops, a handled ask.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::test_probe::Probe;

/// A 24-byte message that counts its drops.
struct Big([u64; 2], Arc<AtomicUsize>);

impl Drop for Big {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

impl Message for Big {
    type Response = u64;
    type Error = String;
}

impl Handler<Big> for Probe {
    async fn handle(&mut self, big: Big, _: &mut Context<Self>) -> Result<u64, String> {
        Ok(big.0[0] + big.0[1])
    }
}

/// 64 bytes: never inline.
struct Wide([u64; 8]);

impl Message for Wide {
    type Response = ();
    type Error = String;
}

impl Handler<Wide> for Probe {
    async fn handle(&mut self, _: Wide, _: &mut Context<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// 24 bytes: inline only without a stamp.
struct Text(String);

impl Message for Text {
    type Response = ();
    type Error = String;
}

impl Handler<Text> for Probe {
    async fn handle(&mut self, _: Text, _: &mut Context<Self>) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn payloads_are_inline_or_boxed_by_their_size_and_the_stamp() {
    // Three words without a stamp, two beside one.
    assert!(Payload::inline::<[u64; 3]>(3));
    assert!(!Payload::inline::<[u64; 3]>(2));
    assert!(Payload::inline::<(u64, oneshot::Sender<u64>)>(2));
    assert!(!Payload::inline::<[u64; 4]>(3));
    // Taken back out whole, through the envelope: 64 bytes (boxed either way) and a
    // 24-byte `String` (inline in three words, boxed beside a stamp).
    for stamp in [0, 12_345] {
        let wide = Envelope::<Probe>::typed_at(Wide([7; 8]), None, stamp);
        assert_eq!(wide.sent(), stamp);
        assert_eq!(wide.into_message::<Wide>().0, [7; 8]);
        let text = Envelope::<Probe>::typed_at(Text("x".into()), None, stamp);
        assert_eq!(text.sent(), stamp);
        assert_eq!(text.into_message::<Text>().0, "x");
    }
}

#[test]
fn an_envelope_is_32_bytes_and_keeps_its_message_with_or_without_a_stamp() {
    assert_eq!(mem::size_of::<Envelope<Probe>>(), 32);
    let drops = Arc::new(AtomicUsize::new(0));
    let big = || Big([1, 2], drops.clone());
    for stamp in [0, 12_345] {
        // A tell of 24 bytes: in three words unstamped, boxed beside a stamp.
        let env = Envelope::<Probe>::typed_at(big(), None, stamp);
        assert_eq!(env.sent(), stamp);
        assert_eq!(env.name(), Big::name());
        assert_eq!(env.into_message::<Big>().0, [1, 2]);
        // An ask: rejected, its asker hears `MailboxFull`.
        let (tx, mut rx) = oneshot::channel();
        let env = Envelope::<Probe>::typed_at(big(), Some(tx), stamp);
        assert_eq!(env.sent(), stamp);
        env.reject();
        assert!(matches!(rx.try_recv(), Ok(Err(AskError::MailboxFull))));
        // Taken back, and dropped unhandled.
        let (tx, _rx) = oneshot::channel();
        assert_eq!(
            Envelope::<Probe>::typed_at(big(), Some(tx), stamp)
                .into_message::<Big>()
                .0,
            [1, 2]
        );
        drop(Envelope::<Probe>::typed_at(big(), None, stamp));
    }
    // Each message dropped once: four a round.
    assert_eq!(drops.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_stamped_ask_is_handled_and_answered() {
    let mut actor = Probe;
    let system = crate::system::ActorSystem::new("envelope");
    let r = system.spawn(Probe).await.unwrap();
    let mut ctx = Context::new(r, system, Default::default());
    let mut slot = FutureSlot::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel();
    let env = Envelope::<Probe>::typed_at(Big([20, 22], drops.clone()), Some(tx), 99);
    let mut cx = TaskContext::from_waker(std::task::Waker::noop());
    assert!(matches!(
        env.handle(&mut actor, &mut ctx, &mut slot, &mut cx),
        Started::Done(Outcome::Done)
    ));
    assert_eq!(rx.await.unwrap().unwrap(), 42);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
