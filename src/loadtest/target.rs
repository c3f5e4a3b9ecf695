//! What differs between the two servers a load test can drive: how a tick is
//! published and how a stream is requested. Switchboard gets Basic-auth publishes of
//! `load.tick` events and signed stream URLs; nchan gets the bare tick as the
//! message body on one channel.

use std::io::Write as _;
use std::time::Duration;

use super::http1::{basic_auth, finish_request, request_head, Endpoint};
use super::{Common, LoadError, Target};

/// The channel the nchan target publishes to and subscribes on.
const NCHAN_CHANNEL: &str = "load";

/// The server under test.
pub struct Server {
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Its protocol.
    pub target: Target,
    /// The account (empty for nchan).
    pub account: String,
    token: String,
    auth: String,
}

impl Server {
    /// Resolves the URL and checks the credentials the target needs.
    pub async fn new(common: &Common) -> Result<Server, LoadError> {
        let endpoint = Endpoint::resolve(&common.url)
            .await
            .map_err(LoadError::Options)?;
        let (account, token) = match common.target {
            Target::Nchan => (String::new(), String::new()),
            Target::Switchboard => {
                let account = common.account.clone().ok_or_else(|| {
                    LoadError::Options(
                        "--account (or SWITCHBOARD_ACCOUNT) is required for the switchboard target"
                            .into(),
                    )
                })?;
                let token = common.token.clone().ok_or_else(|| {
                    LoadError::Options(
                        "--token (or SWITCHBOARD_TOKEN) is required for the switchboard target"
                            .into(),
                    )
                })?;
                let valid = account.len() == 34
                    && account.starts_with("AC")
                    && account[2..].bytes().all(|b| b.is_ascii_hexdigit());
                if !valid {
                    return Err(LoadError::Options(format!(
                        "--account {account:?} is not AC followed by 32 hex digits"
                    )));
                }
                (account, token)
            }
        };
        let auth = basic_auth(&account, &token);
        Ok(Server {
            endpoint,
            target: common.target,
            account,
            token,
            auth,
        })
    }

    /// The head of a publish request, up to (not including) `Content-Length`.
    pub fn publish_head(&self) -> Vec<u8> {
        match self.target {
            Target::Switchboard => request_head(
                "POST",
                &format!("/v1/Accounts/{}/Events", self.account),
                &self.endpoint.host,
                &[
                    ("Authorization", &self.auth),
                    ("Content-Type", "application/json"),
                ],
            ),
            Target::Nchan => request_head(
                "POST",
                &format!("/pub?id={NCHAN_CHANNEL}"),
                &self.endpoint.host,
                &[("Content-Type", "application/json")],
            ),
        }
    }

    /// Writes the body publishing ticks `seqs`, each stamped now, to `out`:
    /// switchboard events on call sid number `call` (an array when there are several),
    /// or nchan's bare tick.
    pub fn tick_body(&self, out: &mut Vec<u8>, seqs: std::ops::Range<u64>, call: u64, run: u64) {
        out.clear();
        let several = seqs.end - seqs.start > 1;
        if several {
            out.push(b'[');
        }
        for seq in seqs {
            if out.len() > 1 {
                out.push(b',');
            }
            let sent = super::now_ns();
            // Writing into a Vec cannot fail.
            let _ = match self.target {
                Target::Switchboard => write!(
                    out,
                    r#"{{"type":"load.tick","call_sid":"CA{call:032x}","data":{{"seq":{seq},"sent_ns":{sent},"run":{run}}}}}"#
                ),
                Target::Nchan => write!(out, r#"{{"seq":{seq},"sent_ns":{sent},"run":{run}}}"#),
            };
        }
        if several {
            out.push(b']');
        }
    }

    /// A whole `GET` request for a stream of `types` (switchboard: a signed URL, so
    /// the tool exercises what browsers do; nchan: the load channel). No `client=`:
    /// a server-assigned client ends with its connection, so a run leaves no sessions
    /// behind to count against `limits.sessions_per_account` or replay into the next.
    pub fn stream_request(&self, types: &str) -> Vec<u8> {
        self.stream_request_with(types, &[], Duration::from_secs(3600))
    }

    /// [`Server::stream_request`] with more query parameters in the signed URL
    /// (`client=…`, `cursor=earliest`; values are sent as given, so URL-safe ones
    /// only), valid for `valid_for`. A named client's subscription lasts as long as
    /// the URL, and its session at least that long: keep it short. Switchboard only:
    /// nchan has no clients or cursors and gets its plain channel URL.
    pub fn stream_request_with(
        &self,
        types: &str,
        extra: &[(&str, &str)],
        valid_for: Duration,
    ) -> Vec<u8> {
        let path = match self.target {
            Target::Switchboard => {
                let mut query = format!("/v1/Accounts/{}/Stream?types={types}", self.account);
                for (name, value) in extra {
                    query.push('&');
                    query.push_str(name);
                    query.push('=');
                    query.push_str(value);
                }
                let secs = valid_for.as_secs().max(1);
                crate::auth::sign_url(&self.token, &query, secs, crate::clock::unix_now())
            }
            Target::Nchan => format!("/sub?id={NCHAN_CHANNEL}"),
        };
        let mut request = request_head(
            "GET",
            &path,
            &self.endpoint.host,
            &[("Accept", "text/event-stream")],
        );
        request.extend_from_slice(b"\r\n");
        request
    }

    /// A Basic-auth `POST` of `body` to `path` with `content_type`.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let head = request_head(
            "POST",
            path,
            &self.endpoint.host,
            &[
                ("Authorization", &self.auth),
                ("Content-Type", content_type),
            ],
        );
        let mut out = Vec::with_capacity(head.len() + body.len() + 32);
        finish_request(&mut out, &head, body);
        out
    }
}
