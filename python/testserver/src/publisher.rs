//! The publishing actor of the topic tests (`python/tests/test_topics.py`): `py:publisher`
//! publishes numbered events to a topic, live or durable, in MessagePack, from the serving
//! system (through its proxy's `Topics`).

use std::sync::{Arc, OnceLock};

use conclib::redis::{
    codec::MsgPack,
    topics::{Topic, Topics},
};
use conclib::remote::ExposedMessage;
use conclib::{Actor, Context, Message, RequestEnvelope};
use serde::{Deserialize, Serialize};

/// Publishes `count` events `Tick { from, seq: 0.. }` to `topic`; answers how many.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    /// The topic's name.
    pub topic: String,
    /// A durable topic (a stream), else a live one (pub/sub).
    pub durable: bool,
    /// The publisher's number, in each event.
    pub from: u32,
    /// How many events.
    pub count: u64,
}

impl Message for Publish {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "test.Publish"
    }
}

impl conclib::remote::MessageDecl for Publish {
    type WireError = String;
}

/// One event: who published it, and its number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tick {
    /// The publisher's number.
    pub from: u32,
    /// 0, 1, 2, ... per publisher.
    pub seq: u64,
}

/// The actor; `topics` is set once the proxy runs.
#[derive(Default)]
pub struct Publisher {
    /// The serving proxy's topics.
    pub topics: Arc<OnceLock<Topics>>,
}

impl Actor for Publisher {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Publish>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        match req.extract::<Publish>() {
            Ok((p, reply)) => reply.respond(self.publish(p).await),
            Err(req) => req.reject(),
        }
    }
}

impl Publisher {
    async fn publish(&self, p: Publish) -> Result<u64, String> {
        let topics = self.topics.get().ok_or("the proxy is not running yet")?;
        let topic = if p.durable {
            Topic::durable(&p.topic)
        } else {
            Topic::live(&p.topic)
        }
        .map_err(|e| e.to_string())?
        .codec(MsgPack);
        for seq in 0..p.count {
            topics
                .publish(&topic, &Tick { from: p.from, seq })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(p.count)
    }
}
