//! Client events that steer calls (docs/api.md §6): `client.hangup`, `client.mute`,
//! `client.unmute` and `client.redirect` act on the call named by `call_sid` only
//! when the sender's [`Grant`] allows that action on that call.
//!
//! The call router remembers each live call's `call.start` data (recorded by
//! [`CallRouter::started`] before the event is published, forgotten when the call
//! ends), so a signed URL's own `where` and `scopes` are evaluated against the very
//! event that URL would have been shown. Authorization ([`CallRouter::authorize`])
//! is separate from acting ([`CallRouter::steer`]) so that the HTTP and WebSocket
//! paths can refuse before publishing anything and act only once the event is
//! accepted: nothing half-done.

use reqwest::Url;
use serde_json::{Map, Value};

use super::CallRouter;
use crate::account::AccountIdx;
use crate::callrouter::CallInput;
use crate::egress::Egress;
use crate::event::Draft;
use crate::filter::EventFields;
use crate::grant::{Action, Grant, Refusal};
use crate::twiml::Method;

/// An authorized action on a call, carried out by [`CallRouter::steer`].
#[derive(Debug)]
pub struct Steer {
    call_sid: String,
    input: CallInput,
}

/// Why a client event that steers a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteerError {
    /// The sender's grant does not cover the action or the call (403).
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    /// A `client.redirect` without a string `data.url` (400).
    #[error("data.url: client.redirect needs an absolute http or https URL")]
    MissingUrl,
    /// A `data.url` that is not an absolute http(s) URL (400).
    #[error("data.url: {0}")]
    BadUrl(String),
    /// A `data.url` the egress rules refuse (403).
    #[error("data.url: {0}")]
    UrlRefused(String),
}

impl SteerError {
    /// Every value [`SteerError::reason`] returns, with [`Refusal::REASONS`]: the
    /// `reason` label of `switchboard_client_events_refused_total`.
    pub const REASONS: [&'static str; 2] = ["url_invalid", "url_refused"];

    /// Low-cardinality metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SteerError::Forbidden(refusal) => refusal.reason(),
            SteerError::MissingUrl | SteerError::BadUrl(_) => "url_invalid",
            SteerError::UrlRefused(_) => "url_refused",
        }
    }
}

impl CallRouter {
    /// Records a call's `call.start` data: from now until the call ends, signed
    /// senders' grants are checked against it.
    pub fn started(&self, sid: &str, data: &Map<String, Value>) {
        if let Some(entry) = self.registry.lock().calls.get_mut(sid) {
            entry.start = Some(data.clone());
        }
    }

    /// Decides whether a client event may act on its call. `Ok(None)`: the event
    /// asks for no action, or (Basic auth only) names no live call of the account,
    /// and is published as any client event. A redirect's URL is checked first,
    /// whoever sends it; then the grant, against the call's `call.start`.
    pub fn authorize(
        &self,
        account: AccountIdx,
        grant: &Grant,
        draft: &Draft,
    ) -> Result<Option<Steer>, SteerError> {
        let Some(action) = Action::of_event_type(&draft.type_name) else {
            return Ok(None);
        };
        let input = match action {
            Action::Hangup => CallInput::Hangup,
            Action::Mute => CallInput::Mute(true),
            Action::Unmute => CallInput::Mute(false),
            Action::Redirect => {
                let url = draft
                    .data
                    .map()
                    .get("url")
                    .and_then(Value::as_str)
                    .ok_or(SteerError::MissingUrl)?;
                CallInput::Redirect(
                    redirect_target(url, self.app.egress())?.into(),
                    Method::Post,
                )
            }
        };
        let call_sid = draft.call_sid.as_deref();
        {
            let registry = self.registry.lock();
            let start = call_sid.and_then(|sid| {
                let entry = registry.calls.get(sid)?;
                let data = entry.start.as_ref()?;
                (entry.record.account == account).then_some(EventFields {
                    type_name: "call.start",
                    call_sid: Some(sid),
                    scope: None,
                    data: data.into(),
                })
            });
            grant.may_act(action, start.as_ref())?;
        }
        Ok(call_sid.map(|sid| Steer {
            call_sid: sid.to_owned(),
            input,
        }))
    }

    /// Carries out an authorized action. The call may have ended since it was
    /// authorized; that is no error.
    pub fn steer(&self, account: AccountIdx, steer: Steer) {
        if let Err(error) = self.input(account, &steer.call_sid, steer.input) {
            tracing::debug!(cause = %error, "a client event named no live call");
        }
    }
}

/// The egress gate for a `client.redirect`'s `data.url`, checked before the event
/// is answered so a refused URL is never requested: a malformed URL is the
/// sender's bad input (400), a URL the rules refuse is forbidden (403).
fn redirect_target(url: &str, egress: &Egress) -> Result<Url, SteerError> {
    egress.check_url(url).map_err(|e| {
        if e.is_refusal() {
            SteerError::UrlRefused(e.to_string())
        } else {
            SteerError::BadUrl(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_must_be_absolute_http_on_an_allowed_host() {
        let allowed = Egress::new(
            &["app.example.com".to_owned()],
            false,
            crate::metrics::Metrics::new(),
        );
        assert!(redirect_target("https://app.example.com/next", &allowed).is_ok());
        for bad in [
            "ftp://app.example.com/x",
            "/relative",
            "not a url",
            "http://u:p@app.example.com/",
        ] {
            match redirect_target(bad, &allowed) {
                Err(SteerError::BadUrl(message)) => assert!(!message.is_empty(), "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        match redirect_target("http://169.254.169.254/latest", &allowed) {
            Err(error @ SteerError::UrlRefused(_)) => {
                assert!(error.to_string().starts_with("data.url: host"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }
}
