//! Actors written with the macros and actors written by hand talk to each other, with
//! messages of both kinds.

use std::convert::Infallible;
use std::time::Duration;

use conclib::{
    Actor, ActorRef, ActorSystem, AskError, Context, Handler, Message, Recipient, RequestEnvelope,
    actor, message,
};

// ---- a hand-written actor with a hand-written message ----

/// Deposits into the hand-written bank; answers the new balance.
struct Deposit(u64);
impl Message for Deposit {
    type Response = u64;
    type Error = Infallible;
}

/// A hand-written actor.
#[derive(Default)]
struct Bank {
    balance: u64,
    /// Filled by `Audit`: a ref to an actor written with the macros.
    ledger: Option<ActorRef<Ledger>>,
}

impl Actor for Bank {
    async fn handle_request(&mut self, request: RequestEnvelope, ctx: &mut Context<Self>) {
        match request.extract::<Deposit>() {
            Ok((msg, responder)) => responder.respond(self.handle(msg, ctx).await),
            Err(request) => request.reject(),
        }
    }
}

impl Handler<Deposit> for Bank {
    async fn handle(
        &mut self,
        Deposit(n): Deposit,
        _: &mut Context<Self>,
    ) -> Result<u64, Infallible> {
        self.balance += n;
        if let Some(ledger) = &self.ledger {
            // A hand-written actor telling a macro actor a macro message.
            ledger.tell(Entry(n)).await.unwrap();
        }
        Ok(self.balance)
    }
}

impl Handler<Audit> for Bank {
    async fn handle(
        &mut self,
        Audit(ledger): Audit,
        _: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        self.ledger = Some(ledger);
        Ok(())
    }
}

// ---- an actor written with the macros ----

/// Writes a line in the ledger.
#[message]
struct Entry(u64);

/// Connects the bank to a ledger.
#[message]
struct Audit(ActorRef<Ledger>);

/// What the ledger holds.
#[message(response = Vec<u64>)]
struct Entries;

/// Deposits through the teller, who asks the hand-written bank.
#[message(response = u64, error = String)]
struct Pay(u64);

/// An actor written with the macros: keeps entries, and pays through the bank.
#[actor]
struct Ledger {
    entries: Vec<u64>,
    bank: ActorRef<Bank>,
}

#[actor]
impl Ledger {
    #[handle]
    fn entry(&mut self, Entry(n): Entry) {
        self.entries.push(n);
    }

    #[handle]
    fn entries(&mut self, _: Entries) -> Vec<u64> {
        self.entries.clone()
    }

    /// A macro actor asking a hand-written actor a hand-written message.
    #[handle]
    async fn pay(&mut self, Pay(n): Pay) -> Result<u64, String> {
        self.bank.ask(Deposit(n)).await.map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn macro_and_hand_written_actors_interoperate() {
    let system = ActorSystem::new("interop");
    let bank = system
        .build(Bank::default())
        .urn("bank")
        .spawn()
        .await
        .unwrap();
    let ledger = system
        .spawn(Ledger {
            entries: Vec::new(),
            bank: bank.clone(),
        })
        .await
        .unwrap();
    bank.ask(Audit(ledger.clone())).await.unwrap();

    // macro -> hand-written -> macro
    assert_eq!(ledger.ask(Pay(5)).await, Ok(5));
    assert_eq!(ledger.ask(Pay(7)).await, Ok(12));
    assert_eq!(ledger.ask(Entries).await, Ok(vec![5, 7]));

    // Recipients erase the difference.
    let deposits: Recipient<Deposit> = bank.recipient();
    assert_eq!(deposits.ask(Deposit(1)).await, Ok(13));
    let entries: Recipient<Entry> = ledger.recipient();
    entries.tell(Entry(100)).await.unwrap();
    assert_eq!(ledger.ask(Entries).await, Ok(vec![5, 7, 1, 100]));

    // So do dynamic refs: by URN for the hand-written one, by conversion for the other.
    let bank_by_name = system.lookup("bank").unwrap();
    assert_eq!(bank_by_name.ask(Deposit(1)).await, Ok(14));
    let ledger_dyn = ledger.to_dyn();
    assert_eq!(ledger_dyn.ask(Entries).await, Ok(vec![5, 7, 1, 100, 1]));
    assert!(matches!(
        ledger_dyn.ask(Deposit(1)).await,
        Err(AskError::UnknownMessage { .. })
    ));
    assert!(ledger_dyn.downcast::<Ledger>().is_some());
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

// ---- two exposed messages of one wire name ----

mod clash {
    use conclib::{actor, message};

    /// Named like the generated `Add` below.
    #[message(name = "Add", response = u64)]
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Plus(pub u64);

    #[actor]
    pub struct Twice;

    #[actor]
    impl Twice {
        #[handle(remote)]
        fn plus(&mut self, Plus(n): Plus) -> u64 {
            n
        }

        #[handle(remote)]
        fn add(&mut self, n: u64) -> u64 {
            n + 1
        }
    }
}

/// One of two exposed messages of one wire name could not be reached by name: an actor with a
/// URN (reachable by name) is refused at its spawn, with what to change; without one, it runs.
#[tokio::test]
async fn two_exposed_messages_of_one_wire_name_are_refused_for_a_named_actor() {
    let system = ActorSystem::new("clash");
    let named = system.build(clash::Twice).urn("twice").spawn().await;
    match named {
        Err(conclib::SpawnError::DuplicateWireName { actor, name }) => {
            assert!(actor.ends_with("Twice"), "{actor}");
            assert_eq!(name, "Add");
        }
        other => panic!("expected DuplicateWireName, got {:?}", other.map(|_| ())),
    }
    assert!(system.lookup("twice").is_err());
    let unnamed = system.spawn(clash::Twice).await.unwrap();
    assert_eq!(unnamed.ask(clash::Plus(2)).await, Ok(2));
}
