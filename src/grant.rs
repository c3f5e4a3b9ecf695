//! What one connection (a stream URL) or one client-events request may do: the
//! sender's grant (docs/api.md §4 `scopes`, `act`, "The grant belongs to the connection";
//! §6 acting on calls).
//!
//! A grant is built once from the authenticated request's own query and travels with
//! the connection, never with the client id: two URLs of one client each keep their
//! own. It answers three questions, each at the place the answer is used:
//!
//! - [`Grant::sees`]: may a scoped event be written to this connection? Asked when a
//!   connection drains its client's outbox, whichever subscription matched the event.
//! - [`Grant::may_send`]: may a client event of this sender carry this scope?
//! - [`Grant::may_act`]: may this sender hang up, mute, unmute or redirect this call?
//!   Basic auth is the account and may; a signed URL may only with that action in its
//!   `act=` and its own `where`/`scopes` matching the call's `call.start` event (types
//!   aside): a page allowed to watch a caller's calls may steer those calls, no others.
//!
//! Plain data, unit-tested without a server.

use std::fmt;

use crate::auth::Principal;
use crate::filter::{EventFields, Filter, ParseError, ScopeGrant};

/// An action on a call that a client event asks for (docs/api.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `client.hangup`.
    Hangup,
    /// `client.mute`.
    Mute,
    /// `client.unmute`.
    Unmute,
    /// `client.redirect` (with `data.url`).
    Redirect,
}

impl Action {
    /// Every action, in `act=` spelling order.
    pub const ALL: [Action; 4] = [
        Action::Hangup,
        Action::Mute,
        Action::Unmute,
        Action::Redirect,
    ];

    /// The name used in `act=` and, after `client.`, in the event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Hangup => "hangup",
            Action::Mute => "mute",
            Action::Unmute => "unmute",
            Action::Redirect => "redirect",
        }
    }

    /// The action a client event type asks for, if any (`client.hangup` → `Hangup`).
    pub fn of_event_type(type_name: &str) -> Option<Action> {
        let name = type_name.strip_prefix("client.")?;
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of actions an `act=` list grants. Empty when `act` is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    /// Parses a decoded `act=` comma list; an empty item or an unknown action is an
    /// error naming `act` and the item's position.
    pub fn parse(list: &str) -> Result<Actions, GrantError> {
        list.split(',')
            .enumerate()
            .try_fold(Actions::default(), |set, (index, item)| {
                let action = Action::ALL
                    .into_iter()
                    .find(|a| a.as_str() == item)
                    .ok_or_else(|| GrantError::UnknownAction {
                        index,
                        item: item.chars().take(64).collect(),
                    })?;
                Ok(Actions(set.0 | action.bit()))
            })
    }

    /// Whether the set holds `action`.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }
}

/// Why a grant's parameters were refused: a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// An `act` item that is not one of the four actions.
    #[error("act[{index}]: `{item}` is not an action (hangup, mute, unmute, redirect)")]
    UnknownAction {
        /// Position in the comma list.
        index: usize,
        /// The item, truncated.
        item: String,
    },
    /// A bad `where` or `scopes` item.
    #[error(transparent)]
    Filter(#[from] ParseError),
}

/// Why a grant refused something: a 403 `forbidden`. The message names the field at
/// fault and never says whether a call exists, so a sender learns nothing about
/// calls it may not act on (another account's, or one that has ended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A client event's `scope` is beyond the sender's `scopes=`.
    #[error("scope: `{0}` is not granted to this sender")]
    Scope(String),
    /// The sender's `act=` does not list the action.
    #[error("act: this sender's URL does not grant `{0}`")]
    Action(Action),
    /// No live call of the account named by `call_sid` matches the URL's `where` and
    /// `scopes`.
    #[error("call_sid: this sender's URL does not grant acting on that call")]
    Call,
}

impl Refusal {
    /// Every value [`Refusal::reason`] returns, for pre-creating metric series.
    pub const REASONS: [&'static str; 3] = ["scope", "act", "call"];

    /// Low-cardinality metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Scope(_) => "scope",
            Refusal::Action(_) => "act",
            Refusal::Call => "call",
        }
    }
}

/// A connection's (or a client-events request's) grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Scoped events this connection may be written (the URL's `scopes`; Basic auth
    /// without `scopes` sees all).
    sees: ScopeGrant,
    /// `None` for Basic auth, which is the account: it acts on any of its calls and
    /// sends any scope.
    signed: Option<Signed>,
}

/// What a signed URL grants beyond seeing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signed {
    /// The URL's `where` and `scopes` over every type: the calls it may act on are
    /// those whose `call.start` passes it.
    calls: Filter,
    /// The URL's `act=`.
    act: Actions,
}

impl Grant {
    /// Builds the grant of an authenticated request from its decoded `where` values,
    /// `scopes` and `act` (each `None` when absent). Basic auth: `scopes` narrows what
    /// the connection sees; `act` is validated but adds nothing (the account may
    /// act). A signed URL: absent `scopes` grant none, absent `act` no action.
    pub fn parse(
        principal: Principal,
        wheres: &[&str],
        scopes: Option<&str>,
        act: Option<&str>,
    ) -> Result<Grant, GrantError> {
        let act = act.map(Actions::parse).transpose()?.unwrap_or_default();
        match principal {
            Principal::Account(_) => {
                let seen = Filter::parse(None, wheres, scopes, ScopeGrant::All)?;
                Ok(Grant {
                    sees: seen.scopes().clone(),
                    signed: None,
                })
            }
            Principal::SignedUrl { .. } => {
                let calls = Filter::parse(None, wheres, scopes, ScopeGrant::Only(Vec::new()))?;
                Ok(Grant {
                    sees: calls.scopes().clone(),
                    signed: Some(Signed { calls, act }),
                })
            }
        }
    }

    /// Whether an event with this scope may be written to the connection.
    pub fn sees(&self, scope: Option<&str>) -> bool {
        self.sees.allows(scope)
    }

    /// Whether a client event of this sender may carry `scope`.
    pub fn may_send(&self, scope: Option<&str>) -> Result<(), Refusal> {
        match (&self.signed, scope) {
            (None, _) | (_, None) => Ok(()),
            (Some(_), Some(scope)) if self.sees.allows(Some(scope)) => Ok(()),
            (Some(_), Some(scope)) => Err(Refusal::Scope(scope.to_owned())),
        }
    }

    /// Whether this sender may take `action` on the call whose `call.start` event is
    /// `call_start` (`None`: no live call of the account by that sid). Basic auth may
    /// always (acting on no call is then a no-op); a signed URL needs the action in
    /// `act=` and its `where`/`scopes` to match `call_start`.
    pub fn may_act(
        &self,
        action: Action,
        call_start: Option<&EventFields<'_>>,
    ) -> Result<(), Refusal> {
        let Some(signed) = &self.signed else {
            return Ok(());
        };
        if !signed.act.contains(action) {
            return Err(Refusal::Action(action));
        }
        match call_start {
            Some(start) if signed.calls.matches(start) => Ok(()),
            _ => Err(Refusal::Call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountIdx;
    use serde_json::{json, Map, Value};

    const BASIC: Principal = Principal::Account(AccountIdx(0));
    const SIGNED: Principal = Principal::SignedUrl {
        account: AccountIdx(0),
        expires: 100,
    };

    fn data(from: &str) -> Map<String, Value> {
        match json!({"from": from, "to": "+14155550111", "direction": "inbound"}) {
            Value::Object(map) => map,
            _ => unreachable!("a literal object"),
        }
    }

    fn start<'a>(call_sid: &'a str, data: &'a Map<String, Value>) -> EventFields<'a> {
        EventFields {
            type_name: "call.start",
            call_sid: Some(call_sid),
            scope: None,
            data: data.into(),
        }
    }

    #[test]
    fn act_lists_parse_and_refuse_unknown_actions() {
        let set = Actions::parse("hangup,redirect").unwrap();
        assert!(set.contains(Action::Hangup) && set.contains(Action::Redirect));
        assert!(!set.contains(Action::Mute) && !set.contains(Action::Unmute));
        for bad in ["", "hangup,", "kill", "Hangup", "hangup,mute,dial"] {
            let error = Actions::parse(bad).unwrap_err();
            assert!(error.to_string().starts_with("act["), "{bad}: {error}");
        }
        assert_eq!(
            Actions::parse("mute,kill").unwrap_err().to_string(),
            "act[1]: `kill` is not an action (hangup, mute, unmute, redirect)"
        );
    }

    #[test]
    fn event_types_name_their_action() {
        assert_eq!(Action::of_event_type("client.hangup"), Some(Action::Hangup));
        assert_eq!(
            Action::of_event_type("client.redirect"),
            Some(Action::Redirect)
        );
        assert_eq!(Action::of_event_type("client.note"), None);
        assert_eq!(Action::of_event_type("hangup"), None);
        assert_eq!(Action::of_event_type("call.hangup"), None);
    }

    #[test]
    fn basic_auth_acts_on_any_call_and_sends_any_scope() {
        let grant = Grant::parse(BASIC, &[], None, None).unwrap();
        assert_eq!(grant.may_act(Action::Hangup, None), Ok(()));
        let d = data("+1");
        assert_eq!(
            grant.may_act(Action::Redirect, Some(&start("CA1", &d))),
            Ok(())
        );
        assert_eq!(grant.may_send(Some("supervisor")), Ok(()));
        assert!(grant.sees(Some("supervisor")));
    }

    #[test]
    fn basic_auth_scopes_narrow_what_the_connection_sees_only() {
        let grant = Grant::parse(BASIC, &[], Some("agent"), None).unwrap();
        assert!(grant.sees(Some("agent")) && grant.sees(None));
        assert!(!grant.sees(Some("supervisor")));
        assert_eq!(grant.may_send(Some("supervisor")), Ok(()));
    }

    #[test]
    fn a_signed_url_without_act_may_not_act() {
        let grant = Grant::parse(SIGNED, &[], None, None).unwrap();
        let d = data("+14155550100");
        for action in Action::ALL {
            assert_eq!(
                grant.may_act(action, Some(&start("CA1", &d))),
                Err(Refusal::Action(action))
            );
        }
    }

    #[test]
    fn a_signed_url_acts_only_on_calls_its_where_matches() {
        let grant = Grant::parse(
            SIGNED,
            &["data.from=+14155550100"],
            None,
            Some("hangup,mute"),
        )
        .unwrap();
        let mine = data("+14155550100");
        let other = data("+14155550199");
        assert_eq!(
            grant.may_act(Action::Hangup, Some(&start("CA1", &mine))),
            Ok(())
        );
        assert_eq!(
            grant.may_act(Action::Mute, Some(&start("CA1", &mine))),
            Ok(())
        );
        assert_eq!(
            grant.may_act(Action::Hangup, Some(&start("CA2", &other))),
            Err(Refusal::Call)
        );
        assert_eq!(
            grant.may_act(Action::Unmute, Some(&start("CA1", &mine))),
            Err(Refusal::Action(Action::Unmute))
        );
        // No live call of the account: nothing to authorize against.
        assert_eq!(grant.may_act(Action::Hangup, None), Err(Refusal::Call));
    }

    #[test]
    fn call_sid_where_pins_the_grant_to_one_call() {
        let grant = Grant::parse(SIGNED, &["call_sid=CA1"], None, Some("hangup")).unwrap();
        let d = data("+1");
        assert_eq!(
            grant.may_act(Action::Hangup, Some(&start("CA1", &d))),
            Ok(())
        );
        assert_eq!(
            grant.may_act(Action::Hangup, Some(&start("CA2", &d))),
            Err(Refusal::Call)
        );
    }

    #[test]
    fn signed_scopes_bound_what_is_seen_and_sent() {
        let none = Grant::parse(SIGNED, &[], None, None).unwrap();
        assert!(none.sees(None) && !none.sees(Some("supervisor")));
        assert_eq!(none.may_send(None), Ok(()));
        assert_eq!(
            none.may_send(Some("supervisor")),
            Err(Refusal::Scope("supervisor".into()))
        );
        let sup = Grant::parse(SIGNED, &[], Some("supervisor"), None).unwrap();
        assert!(sup.sees(Some("supervisor")) && !sup.sees(Some("billing")));
        assert_eq!(sup.may_send(Some("supervisor")), Ok(()));
        assert_eq!(
            sup.may_send(Some("billing")),
            Err(Refusal::Scope("billing".into()))
        );
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let error = Grant::parse(SIGNED, &["data.x~1"], None, None).unwrap_err();
        assert!(error.to_string().starts_with("where"), "{error}");
        let error = Grant::parse(SIGNED, &[], Some("a b"), None).unwrap_err();
        assert!(error.to_string().starts_with("scopes"), "{error}");
        let error = Grant::parse(BASIC, &[], None, Some("dial")).unwrap_err();
        assert!(error.to_string().starts_with("act"), "{error}");
    }
}
