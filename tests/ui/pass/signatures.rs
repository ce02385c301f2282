//! The forms a `#[handle]` method may take, and return types decided by their syntax.
use conclib::{Actor, Context, actor, message};

mod messages {
    use conclib::message;

    /// Answered with a `Result` that is the response itself (not a failure): spelled
    /// through an alias, so the handler is infallible.
    #[message(response = super::Outcome)]
    pub struct Check(pub i32);
}

type Outcome = Result<u32, String>;

#[message(response = u32, error = std::io::Error)]
struct Read;

#[message(response = u32, error = String)]
struct Parse(String);

#[message(response = u32, error = ::core::convert::Infallible)]
struct Plain;

#[message(response = (), error = String)]
struct Fallible;

#[message]
struct Tell;

#[actor]
struct Forms;

#[actor]
impl Forms {
    /// A path to the message; the response is a `Result` through an alias.
    #[handle]
    fn check(&mut self, msg: messages::Check) -> Outcome {
        u32::try_from(msg.0).map_err(|e| e.to_string())
    }

    /// `io::Result<T>` is a `Result`: fallible.
    #[handle]
    async fn read(&mut self, _: Read) -> std::io::Result<u32> {
        Ok(1)
    }

    /// `std::result::Result<T, E>` too.
    #[handle]
    fn parse(&mut self, Parse(text): Parse) -> std::result::Result<u32, String> {
        text.parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())
    }

    /// An explicit `Infallible` error, infallible handler.
    #[handle]
    fn plain(&mut self, _: Plain, _ctx: &mut Context<Self>) -> u32 {
        2
    }

    /// `Result<(), E>`.
    #[handle]
    fn fallible(&mut self, _: Fallible) -> Result<(), String> {
        Err("no".to_owned())
    }

    /// Nothing returned, context first.
    #[handle]
    async fn told(&mut self, ctx: &mut Context<Self>, _: Tell) {
        let _ = ctx.id();
    }
}

fn main() {
    assert!(Forms::REMOTE.is_empty());
    assert_eq!(Forms::URN, None);
    assert_eq!(Forms::MAILBOX, conclib::MailboxConfig::default());
}
