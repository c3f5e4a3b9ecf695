//! Thread-per-core placement: shards and proxies run on the HTTP worker threads.
//!
//! A publish that hops from the worker thread that parsed it to a shard on another
//! thread, and a delivery that hops from a proxy's thread to the connections' writers
//! on the worker threads, each cost a cross-thread wake-up (an `eventfd` write and a
//! context switch): on one core that was half the server's CPU. So the actors are
//! created with their mailboxes up front — their addresses exist before the server
//! accepts anything, and messages sent early wait in the mailbox — and each HTTP
//! worker thread starts its share of them when it starts ([`Placement::start_share`],
//! called from the app factory, which actix-web runs once on each worker thread).
//! With one worker everything is on one thread and no hop crosses threads.
//! Actors made later (a shard the supervisor adds) are started on the worker threads
//! too, round-robin ([`Placement::spawn`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::dev::channel;
use actix::{Actor, Addr, Context, Supervised};
use actix_rt::ArbiterHandle;
use parking_lot::Mutex;
use prometheus::IntCounterVec;

use super::restart::{RestartCounters, Restarting};

/// Starts one actor on the current thread.
type Start = Box<dyn FnOnce() + Send>;

/// Actors waiting for their thread (see the module docs). Every actor placed runs
/// under [`Restarting`]: restarted in place after a panic or a stop.
pub struct Placement {
    shares: Mutex<Vec<Vec<Start>>>,
    next_share: AtomicUsize,
    /// The worker threads that started their share, for actors made later.
    workers: Mutex<Vec<ArbiterHandle>>,
    /// `switchboard_actor_restarts_total`.
    restarts: IntCounterVec,
}

/// What an actor needs to be placed: run under [`Restarting`] on a worker thread.
pub trait Placeable: Actor<Context = Context<Self>> + Supervised + Unpin + Send {
    /// Its `actor` label in the restart counters, and its name in the logs.
    const NAME: &'static str;
}

impl Placement {
    /// Room for `threads` shares (at least one); restarts are counted in `restarts`.
    pub fn new(threads: usize, restarts: IntCounterVec) -> Placement {
        Placement {
            shares: Mutex::new((0..threads.max(1)).map(|_| Vec::new()).collect()),
            next_share: AtomicUsize::new(0),
            workers: Mutex::new(Vec::new()),
            restarts,
        }
    }

    /// What starts `actor` in a context reading `rx` on the thread that calls it
    /// (the running context cannot cross threads; the actor and its mailbox can).
    fn running<A: Placeable>(
        &self,
        rx: channel::AddressReceiver<A>,
        actor: A,
    ) -> impl FnOnce() + Send + 'static {
        let counters = RestartCounters::of(&self.restarts, A::NAME);
        move || {
            let ctx = Context::with_receiver(rx);
            actix_rt::spawn(Restarting::new(ctx, actor, A::NAME, counters));
        }
    }

    /// Creates `actor`'s mailbox (`capacity` is actix's back-pressure hint) and queues
    /// the actor for thread `thread % threads`; the address works at once.
    pub fn place<A: Placeable>(&self, thread: usize, capacity: usize, actor: A) -> Addr<A> {
        let (tx, rx) = channel::channel::<A>(capacity);
        let running = self.running(rx, actor);
        let mut shares = self.shares.lock();
        let count = shares.len();
        shares[thread % count].push(Box::new(running));
        Addr::new(tx)
    }

    /// Starts the next thread's share on the current thread (inside an actix or
    /// tokio local runtime). A thread calling again — a worker whose service actix
    /// restarted — finds its share already taken and starts nothing.
    pub fn start_share(&self) {
        let index = self.next_share.fetch_add(1, Ordering::Relaxed);
        if index < self.shares.lock().len() {
            self.workers.lock().push(actix_rt::Arbiter::current());
        }
        let share = self
            .shares
            .lock()
            .get_mut(index)
            .map(std::mem::take)
            .unwrap_or_default();
        for start in share {
            start();
        }
    }

    /// Starts `actor` now on worker thread `thread % workers` (on the current
    /// thread when no worker has started yet).
    pub fn spawn<A: Placeable>(&self, thread: usize, capacity: usize, actor: A) -> Addr<A> {
        let worker = {
            let workers = self.workers.lock();
            (!workers.is_empty()).then(|| workers[thread % workers.len()].clone())
        };
        let (tx, rx) = channel::channel::<A>(capacity);
        let running = self.running(rx, actor);
        match worker {
            Some(worker) => {
                worker.spawn_fn(running);
            }
            None => running(),
        }
        Addr::new(tx)
    }
}

#[cfg(test)]
mod tests {
    use std::thread::ThreadId;

    use actix::{Arbiter, Handler, Message, MessageResult};

    use super::*;

    struct WhereAmI;

    #[derive(Message)]
    #[rtype(result = "ThreadId")]
    struct Ask;

    impl Actor for WhereAmI {
        type Context = Context<Self>;
    }

    impl Supervised for WhereAmI {}

    impl Placeable for WhereAmI {
        const NAME: &'static str = "shard";
    }

    impl Handler<Ask> for WhereAmI {
        type Result = MessageResult<Ask>;
        fn handle(&mut self, _: Ask, _: &mut Context<Self>) -> MessageResult<Ask> {
            MessageResult(std::thread::current().id())
        }
    }

    #[actix_rt::test]
    async fn each_share_runs_on_the_thread_that_starts_it_and_early_messages_wait() {
        let restarts = crate::metrics::Metrics::new().actor_restarts;
        let placement = std::sync::Arc::new(Placement::new(2, restarts));
        let a = placement.place(0, 16, WhereAmI);
        let b = placement.place(1, 16, WhereAmI);
        let c = placement.place(2, 16, WhereAmI); // wraps to thread 0
        assert_eq!(placement.shares.lock().len(), 2);
        // Sent before any share started: waits in the mailbox.
        let early = a.send(Ask);

        let arbiters = [Arbiter::new(), Arbiter::new()];
        let mut ids = Vec::new();
        for arbiter in &arbiters {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let placement = placement.clone();
            arbiter.spawn(async move {
                placement.start_share();
                let _ = tx.send(std::thread::current().id());
            });
            ids.push(rx.await.expect("arbiter ran the share"));
        }
        assert_eq!(early.await.expect("answered"), ids[0]);
        assert_eq!(b.send(Ask).await.expect("answered"), ids[1]);
        assert_eq!(c.send(Ask).await.expect("answered"), ids[0]);

        // Made later, an actor still runs on a worker thread.
        let late = placement.spawn(1, 16, WhereAmI);
        assert_eq!(late.send(Ask).await.expect("answered"), ids[1]);
        let wrapped = placement.spawn(2, 16, WhereAmI);
        assert_eq!(wrapped.send(Ask).await.expect("answered"), ids[0]);

        // A third start (a restarted service) has no share: nothing runs twice.
        placement.start_share();
        assert!(placement.shares.lock().iter().all(Vec::is_empty));
        for arbiter in arbiters {
            arbiter.stop();
        }
    }
}
