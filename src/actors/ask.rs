//! Asking an actor with a deadline: every request the HTTP surface makes of a proxy
//! (and the topology of every actor) gives up after a while, so a stuck or flooded
//! actor costs its caller a clear 503 instead of a request that hangs.

use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};

/// Why an actor gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// It is gone (the server is stopping).
    #[error("the actor is gone")]
    Gone,
    /// It did not answer within the deadline.
    #[error("the actor did not answer in time")]
    Late,
}

/// Sends `msg` to `addr` and waits at most `deadline` for the answer. The message
/// may still be handled after a `Late`: callers ask only what is safe to have done
/// unanswered (a create is idempotent, a list or a change is answered again on retry).
pub async fn ask<A, M>(addr: &Addr<A>, msg: M, deadline: Duration) -> Result<M::Result, AskError>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match tokio::time::timeout(deadline, addr.send(msg)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(AskError::Gone),
        Err(_) => Err(AskError::Late),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::{Context, ResponseFuture};

    struct Slow;

    impl Actor for Slow {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u8")]
    struct Wait(Duration);

    impl Handler<Wait> for Slow {
        type Result = ResponseFuture<u8>;
        fn handle(&mut self, msg: Wait, _: &mut Context<Self>) -> Self::Result {
            Box::pin(async move {
                tokio::time::sleep(msg.0).await;
                7
            })
        }
    }

    #[actix_rt::test]
    async fn an_answer_in_time_is_returned_and_a_late_one_is_not_waited_for() {
        let slow = Slow.start();
        let quick = ask(&slow, Wait(Duration::ZERO), Duration::from_secs(5)).await;
        assert_eq!(quick, Ok(7));
        let late = ask(
            &slow,
            Wait(Duration::from_secs(60)),
            Duration::from_millis(20),
        )
        .await;
        assert_eq!(late, Err(AskError::Late));
    }
}
