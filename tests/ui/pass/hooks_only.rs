//! An actor with no handlers: only hooks, or nothing at all.
use conclib::{ActorSystem, Context, StopReason, actor};

#[actor]
struct Quiet;

#[actor]
impl Quiet {}

#[actor(mailbox = 1)]
struct Starter {
    started: bool,
}

#[actor]
impl Starter {
    #[on_start]
    async fn start(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        self.started = true;
        ctx.stop();
        Ok(())
    }

    #[on_stop]
    async fn stop(&mut self, ctx: &mut Context<Self>, reason: &StopReason) {
        let _ = (ctx.id(), reason);
        assert!(self.started);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let system = ActorSystem::new("pass");
    let quiet = system.spawn(Quiet).await.unwrap();
    assert!(!<Quiet as conclib::Actor>::accepts(std::any::TypeId::of::<
        u8,
    >()));
    quiet.stop();
    let starter = system.spawn(Starter { started: false }).await.unwrap();
    assert_eq!(starter.wait_for_stop().await, StopReason::Normal);
}
