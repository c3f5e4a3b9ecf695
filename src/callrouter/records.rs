//! The call router's resources — numbers, calls, messages — and their Twilio-shaped
//! JSON (`sid`, `account_sid`, RFC 2822 dates, `uri`, …), so Twilio's helper
//! libraries read them as they read Twilio's.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::account::AccountIdx;
use crate::store::records::{KeptCall, KeptMessage};
use crate::store::StoredNumber;
use crate::twiml::Method;

/// Twilio's API version, in paths and webhook parameters.
pub const API_VERSION: &str = "2010-04-01";

/// A new sid: a two-letter prefix and 32 lowercase hex digits, as Twilio's.
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", crate::account::random_hex())
}

/// A date as Twilio writes it: `Thu, 26 Nov 2026 07:20:50 +0000`.
pub fn rfc2822(at: &DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn opt_date(at: &Option<DateTime<Utc>>) -> Value {
    at.as_ref().map_or(Value::Null, |at| rfc2822(at).into())
}

/// What every resource of the REST API has: an owner, a creation time and a sid.
pub trait Resource {
    /// Owner.
    fn account(&self) -> AccountIdx;
    /// Created.
    fn created(&self) -> DateTime<Utc>;
    /// Its sid.
    fn sid(&self) -> &str;
}

macro_rules! resource {
    ($($record:ty),*) => {$(
        impl Resource for $record {
            fn account(&self) -> AccountIdx {
                self.account
            }
            fn created(&self) -> DateTime<Utc> {
                self.created
            }
            fn sid(&self) -> &str {
                &self.sid
            }
        }
    )*};
}

resource!(NumberRecord, CallRecord, MessageRecord);

/// A provisioned phone number.
#[derive(Debug, Clone)]
pub struct NumberRecord {
    /// `PN` + 32 hex.
    pub sid: String,
    /// Owner.
    pub account: AccountIdx,
    /// E.164.
    pub phone_number: String,
    /// Display name.
    pub friendly_name: String,
    /// The voice application.
    pub voice_url: Option<String>,
    /// How to request it.
    pub voice_method: Method,
    /// The SMS application.
    pub sms_url: Option<String>,
    /// How to request it.
    pub sms_method: Method,
    /// Called when a call to this number ends.
    pub status_callback: Option<String>,
    /// Created.
    pub created: DateTime<Utc>,
}

impl NumberRecord {
    /// The number as the store keeps it (its account by sid).
    pub fn stored(&self, account_sid: &str) -> StoredNumber {
        let app = |url: &Option<String>, method: Method| {
            url.as_ref()
                .map(|url| (url.clone(), method.as_str().to_owned()))
        };
        StoredNumber {
            sid: self.sid.clone(),
            account_sid: account_sid.to_owned(),
            phone_number: self.phone_number.clone(),
            friendly_name: self.friendly_name.clone(),
            voice: app(&self.voice_url, self.voice_method),
            sms: app(&self.sms_url, self.sms_method),
            status_callback: self.status_callback.clone(),
            created_ms: self.created.timestamp_millis(),
        }
    }

    /// A kept number again, for `account`.
    pub fn from_stored(account: AccountIdx, kept: StoredNumber) -> NumberRecord {
        let method = |name: &str| {
            if name == "GET" {
                Method::Get
            } else {
                Method::Post
            }
        };
        let (voice_url, voice_method) = match kept.voice {
            Some((url, m)) => (Some(url), method(&m)),
            None => (None, Method::Post),
        };
        let (sms_url, sms_method) = match kept.sms {
            Some((url, m)) => (Some(url), method(&m)),
            None => (None, Method::Post),
        };
        NumberRecord {
            sid: kept.sid,
            account,
            phone_number: kept.phone_number,
            friendly_name: kept.friendly_name,
            voice_url,
            voice_method,
            sms_url,
            sms_method,
            status_callback: kept.status_callback,
            created: DateTime::from_timestamp_millis(kept.created_ms).unwrap_or_default(),
        }
    }

    /// Twilio's JSON for an IncomingPhoneNumber.
    pub fn json(&self, account_sid: &str) -> Value {
        json!({
            "sid": self.sid,
            "account_sid": account_sid,
            "phone_number": self.phone_number,
            "friendly_name": self.friendly_name,
            "voice_url": self.voice_url,
            "voice_method": self.voice_method.as_str(),
            "sms_url": self.sms_url,
            "sms_method": self.sms_method.as_str(),
            "status_callback": self.status_callback,
            "capabilities": {"voice": true, "sms": true, "mms": false, "fax": false},
            "date_created": rfc2822(&self.created),
            "date_updated": rfc2822(&self.created),
            "api_version": API_VERSION,
            "uri": format!("/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{}.json", self.sid),
        })
    }
}

/// Where a call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the network to a number.
    Inbound,
    /// Placed through the REST API.
    OutboundApi,
    /// A leg placed by `<Dial>`.
    OutboundDial,
}

impl Direction {
    /// Twilio's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundDial => "outbound-dial",
        }
    }
}

impl Direction {
    /// The direction Twilio names `name`.
    pub fn from_name(name: &str) -> Option<Direction> {
        [
            Direction::Inbound,
            Direction::OutboundApi,
            Direction::OutboundDial,
        ]
        .into_iter()
        .find(|direction| direction.as_str() == name)
    }
}

/// A call's state, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// Accepted, not yet ringing.
    Queued,
    /// The far end is being rung.
    Ringing,
    /// Answered and running.
    InProgress,
    /// Ended normally.
    Completed,
    /// Rejected as busy.
    Busy,
    /// Not answered (or rejected).
    NoAnswer,
    /// Could not run (the application failed).
    Failed,
    /// Hung up before it was answered.
    Canceled,
}

impl CallStatus {
    /// Twilio's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// The status Twilio names `name`.
    pub fn from_name(name: &str) -> Option<CallStatus> {
        [
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::NoAnswer,
            CallStatus::Failed,
            CallStatus::Canceled,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }

    /// Whether the call is over.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            CallStatus::Queued | CallStatus::Ringing | CallStatus::InProgress
        )
    }
}

/// A call as the REST API shows it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// `CA` + 32 hex.
    pub sid: String,
    /// Owner.
    pub account: AccountIdx,
    /// The dialling call of a `<Dial>` leg.
    pub parent: Option<String>,
    /// Called number.
    pub to: String,
    /// Caller.
    pub from: String,
    /// Current state.
    pub status: CallStatus,
    /// Where it came from.
    pub direction: Direction,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last change.
    pub updated: DateTime<Utc>,
    /// Answered.
    pub start: Option<DateTime<Utc>>,
    /// Ended.
    pub end: Option<DateTime<Utc>>,
    /// Simulated seconds from answer to end, once ended.
    pub duration: Option<u64>,
}

fn ms(at: &DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl CallRecord {
    /// The call as the store keeps it (its account by sid).
    pub fn kept(&self, account_sid: &str) -> KeptCall {
        KeptCall {
            sid: self.sid.clone(),
            account_sid: account_sid.to_owned(),
            parent: self.parent.clone(),
            to: self.to.clone(),
            from: self.from.clone(),
            status: self.status.as_str().to_owned(),
            direction: self.direction.as_str().to_owned(),
            created_ms: ms(&self.created),
            updated_ms: ms(&self.updated),
            start_ms: self.start.as_ref().map(ms),
            end_ms: self.end.as_ref().map(ms),
            duration: self.duration,
        }
    }

    /// A kept call again, for `account`; `None` when its status or direction
    /// is not one this version knows.
    pub fn from_kept(account: AccountIdx, kept: KeptCall) -> Option<CallRecord> {
        Some(CallRecord {
            status: CallStatus::from_name(&kept.status)?,
            direction: Direction::from_name(&kept.direction)?,
            sid: kept.sid,
            account,
            parent: kept.parent,
            to: kept.to,
            from: kept.from,
            created: from_ms(kept.created_ms),
            updated: from_ms(kept.updated_ms),
            start: kept.start_ms.map(from_ms),
            end: kept.end_ms.map(from_ms),
            duration: kept.duration,
        })
    }

    /// Twilio's JSON for a Call.
    pub fn json(&self, account_sid: &str) -> Value {
        json!({
            "sid": self.sid,
            "account_sid": account_sid,
            "parent_call_sid": self.parent,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from,
            "from_formatted": self.from,
            "status": self.status.as_str(),
            "direction": self.direction.as_str(),
            "start_time": opt_date(&self.start),
            "end_time": opt_date(&self.end),
            "duration": self.duration.map(|d| d.to_string()),
            "price": null,
            "price_unit": "USD",
            "answered_by": null,
            "caller_name": null,
            "date_created": rfc2822(&self.created),
            "date_updated": rfc2822(&self.updated),
            "api_version": API_VERSION,
            "uri": format!("/{API_VERSION}/Accounts/{account_sid}/Calls/{}.json", self.sid),
        })
    }
}

/// An SMS.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    /// `SM` + 32 hex.
    pub sid: String,
    /// Owner.
    pub account: AccountIdx,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: String,
    /// `sent`, `received` or `failed`.
    pub status: &'static str,
    /// `outbound-api`, `inbound` or `outbound-reply`.
    pub direction: &'static str,
    /// Created.
    pub created: DateTime<Utc>,
    /// Twilio's error code of a `failed` message (14107: a reply loop).
    pub error_code: Option<u16>,
}

impl MessageRecord {
    /// The message as the store keeps it (its account by sid).
    pub fn kept(&self, account_sid: &str) -> KeptMessage {
        KeptMessage {
            sid: self.sid.clone(),
            account_sid: account_sid.to_owned(),
            to: self.to.clone(),
            from: self.from.clone(),
            body: self.body.clone(),
            status: self.status.to_owned(),
            direction: self.direction.to_owned(),
            created_ms: ms(&self.created),
            error_code: self.error_code,
        }
    }

    /// A kept message again, for `account`; `None` when its status or direction
    /// is not one this version knows.
    pub fn from_kept(account: AccountIdx, kept: KeptMessage) -> Option<MessageRecord> {
        let known = |name: &str, names: &[&'static str]| names.iter().copied().find(|n| *n == name);
        Some(MessageRecord {
            status: known(&kept.status, &["sent", "received", "failed"])?,
            direction: known(
                &kept.direction,
                &["outbound-api", "inbound", "outbound-reply"],
            )?,
            sid: kept.sid,
            account,
            to: kept.to,
            from: kept.from,
            body: kept.body,
            created: from_ms(kept.created_ms),
            error_code: kept.error_code,
        })
    }

    /// Twilio's JSON for a Message.
    pub fn json(&self, account_sid: &str) -> Value {
        json!({
            "sid": self.sid,
            "account_sid": account_sid,
            "to": self.to,
            "from": self.from,
            "body": self.body,
            "status": self.status,
            "direction": self.direction,
            "num_segments": "1",
            "num_media": "0",
            "price": null,
            "price_unit": "USD",
            "error_code": self.error_code,
            "error_message": null,
            "date_created": rfc2822(&self.created),
            "date_updated": rfc2822(&self.created),
            "date_sent": rfc2822(&self.created),
            "api_version": API_VERSION,
            "uri": format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{}.json", self.sid),
        })
    }
}

/// Which ended calls (or messages) the REST API still shows: the newest `keep` of
/// each account, oldest first (docs/api.md §7, `call_router.keep_ended`).
///
/// Per account, so one tenant ending many calls pushes out only its own records,
/// never another tenant's: a shared pool would let any account erase the others'
/// history (issue #8).
#[derive(Debug)]
pub struct KeptPerAccount {
    keep: usize,
    order: HashMap<AccountIdx, VecDeque<String>>,
}

impl KeptPerAccount {
    /// Keeps at most `keep` sids per account (at least one, as the config
    /// validates: a call must be readable once it has ended).
    pub fn new(keep: usize) -> KeptPerAccount {
        KeptPerAccount {
            keep: keep.max(1),
            order: HashMap::new(),
        }
    }

    /// Records that `sid` of `account` ended; returns the sid of the account's
    /// oldest record when that pushes it out, for the caller to forget.
    pub fn push(&mut self, account: AccountIdx, sid: String) -> Option<String> {
        let order = self.order.entry(account).or_default();
        order.push_back(sid);
        if order.len() > self.keep {
            order.pop_front()
        } else {
            None
        }
    }
}

/// True for `+` followed by 8 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_as_twilio_writes_them() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 7, 20, 50).unwrap();
        assert_eq!(rfc2822(&at), "Thu, 26 Nov 2026 07:20:50 +0000");
    }

    #[test]
    fn e164() {
        assert!(is_e164("+14155550100"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+1415"));
        assert!(!is_e164("+1415555010a"));
    }

    #[test]
    fn each_account_keeps_its_own_newest_records() {
        let (a, b) = (AccountIdx(0), AccountIdx(1));
        let mut kept = KeptPerAccount::new(2);
        assert_eq!(kept.push(b, "B1".into()), None);
        assert_eq!(kept.push(a, "A1".into()), None);
        assert_eq!(kept.push(a, "A2".into()), None);
        assert_eq!(kept.push(a, "A3".into()), Some("A1".into()));
        assert_eq!(kept.push(a, "A4".into()), Some("A2".into()));
        // B1 outlived A's pushes: B's own second record keeps it, its third
        // pushes out B1 itself.
        assert_eq!(kept.push(b, "B2".into()), None);
        assert_eq!(kept.push(b, "B3".into()), Some("B1".into()));
    }

    #[test]
    fn keeps_at_least_one() {
        let mut kept = KeptPerAccount::new(0);
        assert_eq!(kept.push(AccountIdx(0), "A1".into()), None);
        assert_eq!(kept.push(AccountIdx(0), "A2".into()), Some("A1".into()));
    }

    #[test]
    fn sids() {
        let sid = new_sid("CA");
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("CA"));
    }
}
