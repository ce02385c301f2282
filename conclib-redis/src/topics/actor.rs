//! Actor subscriptions: a topic's events delivered into an actor's mailbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_core::{AskError, Message, Recipient};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::link::SubscriptionStats;
use super::publish::Topics;
use super::subscription::{SubscribeRequest, Subscription};
use super::topic::{DeliveryMode, Topic, TopicError};

/// How long a durable event handed to an actor may take (queued and handled) by default.
pub const DEFAULT_HANDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A topic's events going into an actor; from [`SubscribeRequest::to_actor`] or
/// [`Topics::subscribe_actor`]. It runs until the actor stops or this handle is dropped
/// (or [`stop`](Self::stop)ped).
///
/// A live topic's events are told to the actor: the forwarding waits while its mailbox is
/// full (back-pressure), and the subscription's buffer fills meanwhile, then drops (counted).
/// A durable topic's events are asked: each is acknowledged once the actor's handler
/// returned (whatever it returned), so an event whose handling the process did not finish
/// comes again; an event whose ask failed otherwise (it took longer than
/// [`DEFAULT_HANDLE_TIMEOUT`], the handler panicked) is counted in
/// [`failed`](Self::failed) and not retried. Events that do not decode are counted in the
/// subscription's stats and skipped.
#[derive(Debug)]
pub struct ActorSubscription {
    task: tokio::task::JoinHandle<()>,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    stats: std::sync::Mutex<SubscriptionStats>,
    handed: AtomicU64,
    failed: AtomicU64,
}

impl ActorSubscription {
    /// Events handed to the actor (told, or asked and answered).
    #[must_use]
    pub fn handed(&self) -> u64 {
        self.state.handed.load(Ordering::Relaxed)
    }

    /// Durable events whose ask failed (timeout, panic) and that were not retried.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::Relaxed)
    }

    /// The subscription's stats, as of the last event.
    #[must_use]
    pub fn stats(&self) -> SubscriptionStats {
        *self.state.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether it still runs (the actor is alive, Redis reachable or being reconnected to).
    #[must_use]
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops delivering. Events being handled by the actor now are finished by it, but a
    /// durable one among them is not acknowledged: it comes again to the group.
    pub fn stop(self) {}
}

impl Drop for ActorSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<E> SubscribeRequest<E>
where
    E: Message + DeserializeOwned,
{
    /// Subscribes with these options and delivers the events to `actor` (see
    /// [`ActorSubscription`]).
    ///
    /// ```no_run
    /// # use conclib_core::{Actor, ActorRef, Context, Handler, Message};
    /// # #[derive(serde::Deserialize)] struct OrderPlaced(u64);
    /// # impl Message for OrderPlaced { type Response = (); type Error = std::convert::Infallible; fn name() -> &'static str { "OrderPlaced" } }
    /// # struct Billing; impl Actor for Billing {}
    /// # impl Handler<OrderPlaced> for Billing {
    /// #     async fn handle(&mut self, _: OrderPlaced, _: &mut Context<Self>) -> Result<(), std::convert::Infallible> { Ok(()) }
    /// # }
    /// # async fn demo(client: conclib_redis::ProxyClient, billing: ActorRef<Billing>) -> Result<(), conclib_redis::topics::TopicError> {
    /// use conclib_redis::topics::Topic;
    /// let topic = Topic::durable("orders.placed")?;
    /// let feed = client
    ///     .topics()
    ///     .subscribe::<OrderPlaced>(&topic)
    ///     .group("billing")
    ///     .to_actor(billing.recipient())
    ///     .await?;
    /// # drop(feed); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As awaiting the request.
    pub async fn to_actor(self, actor: Recipient<E>) -> Result<ActorSubscription, TopicError> {
        let delivery = self.topic.delivery();
        let subscription = self.await?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(forward(subscription, actor, delivery, state.clone()));
        Ok(ActorSubscription { task, state })
    }
}

impl Topics {
    /// [`subscribe`](Self::subscribe) with the default options, into an actor: see
    /// [`SubscribeRequest::to_actor`].
    ///
    /// # Errors
    /// As awaiting a [`SubscribeRequest`].
    pub async fn subscribe_actor<E>(
        &self,
        topic: &Topic,
        actor: Recipient<E>,
    ) -> Result<ActorSubscription, TopicError>
    where
        E: Message + DeserializeOwned,
    {
        self.subscribe::<E>(topic).to_actor(actor).await
    }
}

async fn forward<E>(
    mut events: Subscription<E>,
    actor: Recipient<E>,
    delivery: DeliveryMode,
    state: Arc<State>,
) where
    E: Message + DeserializeOwned,
{
    while let Some(next) = events.next().await {
        *state.stats.lock().unwrap_or_else(|e| e.into_inner()) = events.stats();
        let event = match next {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(topic = events.topic().name(), error = %e, "topic event not delivered to the actor");
                continue;
            }
        };
        let stopped = match delivery {
            DeliveryMode::Live => actor.tell(event).await.is_err(),
            DeliveryMode::Durable => match actor.ask(event).timeout(DEFAULT_HANDLE_TIMEOUT).await {
                Ok(_) | Err(AskError::Handler(_)) => false,
                Err(AskError::ActorStopped) => true,
                Err(e) => {
                    tracing::warn!(topic = events.topic().name(), error = %e, "a topic event's ask failed");
                    state.failed.fetch_add(1, Ordering::Relaxed);
                    false
                }
            },
        };
        if stopped {
            // Not acknowledged: the next subscriber of the group gets it.
            return;
        }
        state.handed.fetch_add(1, Ordering::Relaxed);
    }
}
