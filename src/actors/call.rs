//! `Call`: one phone call running its TwiML application.
//!
//! Owns: the call's [`Program`] (`callrouter::program`: requests TwiML, runs the verbs
//! with simulated media time, emits the events of docs/api.md §2) and the channel of
//! inputs that reach it while it runs.
//! Receives: `CallInput` (digits, speech and hang-ups from the simulated network,
//! hang-ups and redirects from the REST API, mute and redirects from client events,
//! the end of a conference room) from the [`CallRouter`].
//! Bounds: one small future and a bounded input channel; an idle call (waiting in a
//! `Pause`, a `Gather` or a conference) holds no thread and no timer but its own.
//! On stop: the program has ended; the router has recorded the final status and told
//! anyone waiting on the call (a `<Dial>`ing parent).

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::callrouter::live::LiveCall;
use crate::callrouter::program::{CallInput, CallSetup, Program, INPUT_QUEUE};
use crate::callrouter::CallRouter;

/// Starts a call's actor (the router's way to start calls, given to it at start-up)
/// and returns where its inputs go.
pub fn start(router: Arc<CallRouter>, setup: CallSetup, live: LiveCall) -> Recipient<CallInput> {
    Call::new(router, setup, live).start().recipient()
}

/// The call actor: a thin shell around its program.
pub struct Call {
    router: Arc<CallRouter>,
    setup: Option<(CallSetup, LiveCall)>,
    inputs: Option<mpsc::Sender<CallInput>>,
}

impl Call {
    /// A call about to run `setup`, counted in `live` until its program has ended.
    pub fn new(router: Arc<CallRouter>, setup: CallSetup, live: LiveCall) -> Call {
        Call {
            router,
            setup: Some((setup, live)),
            inputs: None,
        }
    }
}

impl Actor for Call {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        self.inputs = Some(tx);
        let Some((setup, live)) = self.setup.take() else {
            ctx.stop();
            return;
        };
        let program = Program::new(self.router.clone(), setup, rx, live);
        ctx.spawn(program.run().into_actor(self).map(|(), _, ctx| ctx.stop()));
    }
}

impl Handler<CallInput> for Call {
    type Result = ();

    fn handle(&mut self, input: CallInput, ctx: &mut Self::Context) {
        let Some(inputs) = &self.inputs else {
            return;
        };
        match inputs.try_send(input) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(input)) if input.must_arrive() => {
                // A hang-up or a bridge's end waits for room behind the flood
                // of keys rather than being lost.
                let inputs = inputs.clone();
                ctx.spawn(
                    async move {
                        let _ = inputs.send(input).await;
                    }
                    .into_actor(self),
                );
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("a call's input queue is full; keys or speech dropped");
            }
        }
    }
}
