//! Running an actor so that it comes back: a shard or proxy that panics out of a
//! handler, or stops while something still holds its address, is restarted in place
//! (docs/api.md §8: a shard that dies is restarted with its slots and its retention).
//!
//! In place means the same actor value and the same mailbox: the state it had (a
//! shard's slots, retention and registrations, a proxy's sessions) stays, every
//! address handed out stays valid, and messages sent while it was down wait in the
//! mailbox instead of failing (publishes wait, none is refused for it). This is
//! actix's `Supervisor`, plus what it lacks: a panic is caught at the poll (actix's
//! would unwind through the arbiter's task and drop the actor with its mailbox), and
//! restarts that follow one another quickly are spaced out, so an actor that panics
//! as it starts costs a restart a second, not a core.
//!
//! What a panic does lose is the message whose handler panicked; handlers that must
//! not lose work guard themselves (a shard gives a dropped batch's queue slot back).
//! An actor stops for good once nothing holds its address (a retired shard).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::dev::ContextFut;
use actix::{Actor, Context, Supervised};
use prometheus::{IntCounter, IntCounterVec, IntGauge};

/// Restarts within this long of the last one count as one run of failures.
const QUICK: Duration = Duration::from_secs(1);
/// Quick restarts allowed before the next waits.
const QUICK_RESTARTS: u32 = 3;
/// The wait before a restart after too many quick ones.
const BACKOFF: Duration = Duration::from_secs(1);

/// One running actor in a gauge (`switchboard_shards`, `switchboard_proxies`): raised
/// when the actor is made, lowered when it is dropped. Not `started`/`stopped`, which
/// a restart after a panic does not pair.
pub struct Running(IntGauge);

impl Running {
    /// Counts one more in `gauge` until dropped.
    pub fn new(gauge: IntGauge) -> Running {
        gauge.inc();
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a restart counts: `switchboard_actor_restarts_total{actor, cause}`.
#[derive(Clone)]
pub struct RestartCounters {
    /// Restarts after a panic.
    pub panicked: IntCounter,
    /// Restarts after the actor stopped while its address was held.
    pub stopped: IntCounter,
}

impl RestartCounters {
    /// The counters of actors named `actor`.
    pub fn of(restarts: &IntCounterVec, actor: &str) -> RestartCounters {
        RestartCounters {
            panicked: restarts.with_label_values(&[actor, "panic"]),
            stopped: restarts.with_label_values(&[actor, "stop"]),
        }
    }
}

/// An actor's context, run as a future that restarts it (see the module docs).
pub struct Restarting<A>
where
    A: Actor<Context = Context<A>> + Supervised + Unpin,
{
    fut: ContextFut<A, Context<A>>,
    counters: RestartCounters,
    name: &'static str,
    last: Option<tokio::time::Instant>,
    quick: u32,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<A> Restarting<A>
where
    A: Actor<Context = Context<A>> + Supervised + Unpin,
{
    /// Runs `actor` in `ctx` (a context made with the actor's mailbox); `name` is the
    /// `actor` label and the logs' name for it.
    pub fn new(
        ctx: Context<A>,
        actor: A,
        name: &'static str,
        counters: RestartCounters,
    ) -> Restarting<A> {
        Restarting {
            fut: ctx.into_future(actor),
            counters,
            name,
            last: None,
            quick: 0,
            backoff: None,
        }
    }

    /// Restarts the actor after `cause`; false when nothing holds its address any
    /// more (it is done).
    fn restart(&mut self, panicked: bool) -> bool {
        if !self.fut.restart() {
            return false;
        }
        let counter = if panicked {
            &self.counters.panicked
        } else {
            &self.counters.stopped
        };
        counter.inc();
        let now = tokio::time::Instant::now();
        let quick = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < QUICK);
        self.quick = if quick { self.quick + 1 } else { 0 };
        self.last = Some(now);
        let backoff = self.quick >= QUICK_RESTARTS;
        if backoff {
            self.backoff = Some(Box::pin(tokio::time::sleep(BACKOFF)));
        }
        tracing::error!(
            actor = self.name,
            cause = if panicked { "panic" } else { "stop" },
            backoff,
            "actor restarted in place"
        );
        true
    }
}

impl<A> Future for Restarting<A>
where
    A: Actor<Context = Context<A>> + Supervised + Unpin,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if let Some(backoff) = &mut this.backoff {
                if backoff.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.backoff = None;
            }
            // The actor's state is left as the handler left it: the same trade a
            // handler's own guard makes (a shard's batch guard).
            let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.fut).poll(cx)));
            let panicked = match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => false,
                Err(_) => true,
            };
            if !this.restart(panicked) {
                return Poll::Ready(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::dev::channel;
    use actix::{ActorContext, Addr, Handler, Message, MessageResult};
    use prometheus::IntCounter;

    /// Counts what it was told; panics or stops when asked.
    #[derive(Default)]
    struct Fragile {
        seen: u32,
        starts: u32,
    }

    impl Actor for Fragile {
        type Context = Context<Self>;
        fn started(&mut self, _: &mut Context<Self>) {
            self.starts += 1;
        }
    }

    impl Supervised for Fragile {}

    #[derive(Message)]
    #[rtype(result = "(u32, u32)")]
    enum Do {
        Count,
        Panic,
        Stop,
    }

    impl Handler<Do> for Fragile {
        type Result = MessageResult<Do>;
        fn handle(&mut self, msg: Do, ctx: &mut Context<Self>) -> MessageResult<Do> {
            match msg {
                Do::Count => self.seen += 1,
                Do::Panic => panic!("a bug"),
                Do::Stop => ctx.stop(),
            }
            MessageResult((self.seen, self.starts))
        }
    }

    fn counters() -> RestartCounters {
        RestartCounters {
            panicked: IntCounter::new("p", "p").unwrap(),
            stopped: IntCounter::new("s", "s").unwrap(),
        }
    }

    fn start(counters: RestartCounters) -> Addr<Fragile> {
        let (tx, rx) = channel::channel::<Fragile>(16);
        let ctx = Context::with_receiver(rx);
        actix_rt::spawn(Restarting::new(ctx, Fragile::default(), "test", counters));
        Addr::new(tx)
    }

    #[actix_rt::test]
    async fn a_panic_or_a_stop_restarts_the_same_actor_with_its_mailbox() {
        let counters = counters();
        let addr = start(counters.clone());
        assert_eq!(addr.send(Do::Count).await.unwrap(), (1, 1));
        // Sent together: the panic loses only its own message, the next one waits
        // in the mailbox through the restart and finds the state as it was.
        let panicked = addr.send(Do::Panic);
        let after = addr.send(Do::Count);
        assert!(
            panicked.await.is_err(),
            "the panicking message has no answer"
        );
        assert_eq!(after.await.unwrap(), (2, 2), "state kept, started again");
        assert_eq!(counters.panicked.get(), 1);
        // A stop while the address is held is a restart too.
        assert_eq!(addr.send(Do::Stop).await.unwrap(), (2, 2));
        assert_eq!(addr.send(Do::Count).await.unwrap(), (3, 3));
        assert_eq!(counters.stopped.get(), 1);
    }

    #[actix_rt::test]
    async fn quick_restarts_in_a_row_are_spaced_out() {
        let counters = counters();
        let addr = start(counters.clone());
        for _ in 0..QUICK_RESTARTS {
            let _ = addr.send(Do::Panic).await;
        }
        // The next restart waits a second; the message waits with it.
        let started = tokio::time::Instant::now();
        let _ = addr.send(Do::Panic).await;
        assert_eq!(addr.send(Do::Count).await.unwrap().0, 1);
        assert!(started.elapsed() >= BACKOFF, "{:?}", started.elapsed());
        assert_eq!(counters.panicked.get(), u64::from(QUICK_RESTARTS) + 1);
    }

    #[actix_rt::test]
    async fn an_actor_nobody_holds_stops_for_good() {
        let counters = counters();
        let addr = start(counters.clone());
        addr.do_send(Do::Stop);
        drop(addr);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(counters.stopped.get(), 0, "nothing to restart it for");
    }
}
