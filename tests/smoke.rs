//! Smoke test of the core runtime through the facade.
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::time::Duration;

struct Counter(u64);
impl Actor for Counter {
    async fn handle_request(&mut self, req: RequestEnvelope, ctx: &mut Context<Self>) {
        match req.extract::<Add>() {
            Ok((msg, r)) => r.respond(self.handle(msg, ctx).await),
            Err(req) => req.reject(),
        }
    }
}
struct Add(u64);
impl Message for Add {
    type Response = u64;
    type Error = Infallible;
}
impl Handler<Add> for Counter {
    async fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
        self.0 += msg.0;
        Ok(self.0)
    }
}
struct Boom;
impl Message for Boom {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Boom> for Counter {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) -> Result<(), Infallible> {
        tokio::task::yield_now().await;
        panic!("boom");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let system = ActorSystem::new("t");
    let c = system.build(Counter(0)).urn("c").spawn().await.unwrap();
    for _ in 0..1000 {
        c.tell(Add(1)).await.unwrap();
    }
    assert_eq!(c.ask(Add(0)).await.unwrap(), 1000);
    let d = system.lookup("c").unwrap();
    assert_eq!(d.ask(Add(1)).await.unwrap(), 1001);
    assert!(matches!(
        d.ask(Boom).await,
        Err(AskError::UnknownMessage { .. })
    ));
    assert_eq!(
        c.ask(Boom).timeout(Duration::from_secs(1)).await,
        Err(AskError::Panicked("boom".into()))
    );
    assert_eq!(c.wait_for_stop().await, StopReason::Panicked("boom".into()));
    assert!(system.lookup("c").is_err());
    assert_eq!(c.ask(Add(1)).await, Err(AskError::ActorStopped));
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}
