//! The egress rules (docs/api.md §5): what the router may request on a tenant's behalf.
//!
//! Webhook callbacks and the call router's application, action, redirect,
//! status-callback and media URLs are chosen by tenants, so each is a way to aim the
//! router at something only the router can reach (SSRF). Every such request goes
//! through one [`Egress`], which holds the whole policy:
//!
//! - **Hosts**: with a non-empty `webhook.allowed_hosts`, only those hosts (`host`, or
//!   `host:port`) — checked by [`Egress::check_url`] before the first request and on
//!   every redirect.
//! - **Private networks**: unless `egress.allow_private_networks`, loopback, private,
//!   link-local, shared, unique-local, multicast and unspecified addresses are
//!   refused (hosts listed in `webhook.allowed_hosts` excepted). IP literals are
//!   checked by [`Egress::check_url`]; DNS names by the clients' resolver, on the
//!   addresses the connection will actually use, so a name that resolves to a public
//!   address when checked and to `127.0.0.1` when connected (DNS rebinding) cannot
//!   slip past. System proxies are ignored: through a proxy the resolver would see
//!   the proxy's name, not the target's.
//! - **Redirects**: [`Egress::webhook_client`] follows none (a 3xx is a failed
//!   delivery); [`Egress::app_client`] follows at most [`MAX_REDIRECTS`], each target
//!   checked like the first URL.
//! - **Bodies**: [`read_capped`] reads at most a cap whether or not the response
//!   declares its length, so a streaming answer cannot fill memory.
//!
//! The operator's own `call_router.publish_url` sink is not a tenant request and does
//! not go through here.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{redirect, Url};

use crate::metrics::Metrics;

/// Most redirects the call router follows for one request (Twilio's own limit is
/// similar); webhooks follow none.
pub const MAX_REDIRECTS: usize = 5;

/// Reasons counted in `switchboard_egress_refused_total`.
pub const REFUSAL_REASONS: &[&str] = &[
    "host_not_allowed",
    "private_address",
    "redirect_limit",
    "response_too_large",
];

/// Why a URL or request was refused. The texts name no parameter: the HTTP edge
/// prefixes the parameter (`callback: …`, `Url: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Not parseable as an absolute URL (including `http://` with no host).
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// A scheme other than `http` or `https`.
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    /// An absolute URL without a host.
    #[error("the URL has no host")]
    NoHost,
    /// A user name or password in the URL: credentials belong in the signature.
    #[error("the URL must not carry a user name or password")]
    UserInfo,
    /// A host (and port) not in `webhook.allowed_hosts`.
    #[error("host `{0}` is not in webhook.allowed_hosts")]
    HostNotAllowed(String),
    /// A host that is, or resolves only to, a private-network address.
    #[error("host `{0}` is a private network address (egress.allow_private_networks is off)")]
    PrivateAddress(String),
    /// A redirect chain longer than [`MAX_REDIRECTS`].
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

impl EgressError {
    /// The `reason` label this refusal is counted under, if it is a policy refusal
    /// (malformed URLs are bad input, not refusals).
    fn reason(&self) -> Option<&'static str> {
        match self {
            EgressError::HostNotAllowed(_) => Some("host_not_allowed"),
            EgressError::PrivateAddress(_) => Some("private_address"),
            EgressError::TooManyRedirects => Some("redirect_limit"),
            EgressError::Invalid(_)
            | EgressError::Scheme(_)
            | EgressError::NoHost
            | EgressError::UserInfo => None,
        }
    }

    /// True for a policy refusal (a forbidden target), false for a malformed URL
    /// (the caller's bad input).
    pub fn is_refusal(&self) -> bool {
        self.reason().is_some()
    }

    /// A fixed text naming the rule, without the host: for messages that reach
    /// subscribers about URLs they may not have chosen (a redirect's `Location`).
    pub fn rule(&self) -> &'static str {
        match self {
            EgressError::Invalid(_) | EgressError::Scheme(_) | EgressError::NoHost => {
                "not an absolute http(s) URL"
            }
            EgressError::UserInfo => "the URL carries a user name or password",
            EgressError::HostNotAllowed(_) => "the host is not in webhook.allowed_hosts",
            EgressError::PrivateAddress(_) => "the host is a private network address",
            EgressError::TooManyRedirects => "too many redirects",
        }
    }

    /// The egress refusal that caused a request error, if one did (the resolver and
    /// the redirect policy report theirs through reqwest's error chain).
    pub fn cause_of(error: &reqwest::Error) -> Option<&EgressError> {
        let mut source = StdError::source(error);
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<EgressError>() {
                return Some(refusal);
            }
            source = cause.source();
        }
        None
    }
}

/// The policy, shared by every client built from it.
struct Policy {
    /// `webhook.allowed_hosts`, trimmed; empty allows any host.
    allowed_hosts: Vec<String>,
    /// `egress.allow_private_networks`, resolved.
    allow_private: bool,
    metrics: Metrics,
}

/// The egress rules and the HTTP clients that obey them. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<Policy>,
}

impl Egress {
    /// The rules for `allowed_hosts` (empty: any host) and whether private networks
    /// are reachable; refusals are counted in `metrics`.
    pub fn new(allowed_hosts: &[String], allow_private_networks: bool, metrics: Metrics) -> Egress {
        Egress {
            policy: Arc::new(Policy {
                allowed_hosts: allowed_hosts.iter().map(|h| h.trim().to_owned()).collect(),
                allow_private: allow_private_networks,
                metrics,
            }),
        }
    }

    /// Validates a tenant-supplied URL before it is accepted or requested: absolute
    /// `http`/`https` with a host and no userinfo, on a listed host when the list is
    /// set, and not a private-network IP literal unless allowed. DNS names are checked
    /// when connecting (see the module docs), not here.
    pub fn check_url(&self, url: &str) -> Result<Url, EgressError> {
        let parsed = Url::parse(url).map_err(|e| EgressError::Invalid(e.to_string()))?;
        self.policy
            .check(&parsed)
            .map_err(|e| self.policy.refused(e))?;
        Ok(parsed)
    }

    /// A client for webhook callbacks: follows no redirect (docs/api.md §5: a 3xx is a
    /// failed delivery), ignores system proxies, resolves names with the
    /// private-network filter; each request times out after `timeout`.
    pub fn webhook_client(&self, timeout: Duration) -> reqwest::Client {
        self.builder(timeout)
            .redirect(redirect::Policy::none())
            .build()
            .unwrap_or_default()
    }

    /// A client for the call router's applications: follows at most
    /// [`MAX_REDIRECTS`] redirects, each target checked by [`Egress::check_url`]'s
    /// rules; otherwise like [`Egress::webhook_client`].
    pub fn app_client(&self, timeout: Duration, user_agent: &str) -> reqwest::Client {
        let policy = self.policy.clone();
        self.builder(timeout)
            .user_agent(user_agent)
            .redirect(redirect::Policy::custom(move |attempt| {
                // `previous` holds the first URL and every redirect followed so far.
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(policy.refused(EgressError::TooManyRedirects));
                }
                match policy.check(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(error) => attempt.error(policy.refused(error)),
                }
            }))
            .build()
            .unwrap_or_default()
    }

    /// Counts a response cut off at its cap.
    pub fn count_too_large(&self) {
        self.policy.count("response_too_large");
    }

    fn builder(&self, timeout: Duration) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().timeout(timeout).no_proxy();
        if self.policy.allow_private {
            builder
        } else {
            builder.dns_resolver(Arc::new(PublicResolver {
                policy: self.policy.clone(),
            }))
        }
    }
}

impl Policy {
    /// Every rule that can be decided from the URL alone.
    fn check(&self, url: &Url) -> Result<(), EgressError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(EgressError::Scheme(scheme.to_owned()));
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(EgressError::NoHost),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::UserInfo);
        }
        let host_port = url
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        let listed = self.allowed_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(host)
                || host_port
                    .as_deref()
                    .is_some_and(|hp| allowed.eq_ignore_ascii_case(hp))
        });
        if listed {
            return Ok(());
        }
        if !self.allowed_hosts.is_empty() {
            return Err(EgressError::HostNotAllowed(
                host_port.unwrap_or_else(|| host.to_owned()),
            ));
        }
        // `Url` writes IPv4 hosts in dotted form (`0x7f.1` becomes `127.0.0.1`) and
        // IPv6 hosts in brackets.
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        if !self.allow_private && literal.is_ok_and(is_private) {
            return Err(EgressError::PrivateAddress(host.to_owned()));
        }
        Ok(())
    }

    /// Whether a resolved name is listed (any port): listed hosts are exempt from
    /// the private-network rule.
    fn lists_name(&self, name: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|allowed| entry_host(allowed).eq_ignore_ascii_case(name))
    }

    /// Counts a policy refusal and logs it (host only: paths and queries may carry
    /// secrets), then hands it back.
    fn refused(&self, error: EgressError) -> EgressError {
        if let Some(reason) = error.reason() {
            self.count(reason);
            tracing::info!(reason, %error, "egress refused");
        }
        error
    }

    fn count(&self, reason: &str) {
        self.metrics
            .egress_refused
            .with_label_values(&[reason])
            .inc();
    }
}

/// The host part of an allow-list entry (`host`, `host:port`, `[v6]:port`).
fn entry_host(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => entry,
    }
}

/// Resolves names with the system resolver and drops private addresses, so the
/// connection can only be made to a public one.
struct PublicResolver {
    policy: Arc<Policy>,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.lists_name(&host) {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| !is_private(addr.ip()))
                .collect();
            if public.is_empty() {
                let error = policy.refused(EgressError::PrivateAddress(host));
                return Err(Box::new(error) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether an address is one docs/api.md §5 keeps tenants away from: loopback, private
/// (RFC 1918), link-local, shared (100.64/10), unique-local (fc00::/7), multicast,
/// unspecified — and "this network" (0/8), broadcast and IPv6 site-local, which
/// reach the same places. IPv4 addresses embedded in IPv6 (mapped, compatible,
/// NAT64 64:ff9b::/96) are judged as the IPv4 address they carry.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = ip.to_ipv4_mapped().or_else(|| {
        let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
        let compatible = segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified();
        (nat64 || compatible).then(|| {
            let [.., c, d, e, f] = ip.octets();
            Ipv4Addr::new(c, d, e, f)
        })
    });
    if let Some(v4) = embedded_v4 {
        return is_private_v4(v4);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
}

/// Why [`read_capped`] returned no body.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body (declared or as read) is over the cap; reading stopped there.
    #[error("the response is over {0} bytes")]
    TooLarge(usize),
    /// The connection failed or timed out while reading.
    #[error("reading the response failed")]
    Http(#[source] reqwest::Error),
}

/// Reads a response body of at most `cap` bytes. A declared `Content-Length` over
/// the cap is refused before reading; an undeclared (chunked) body is read chunk by
/// chunk and abandoned as soon as it passes the cap, which closes the connection.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > cap))
    {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(ReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(allowed: &[&str], allow_private: bool) -> Egress {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        Egress::new(&allowed, allow_private, Metrics::new())
    }

    fn refusals(egress: &Egress, reason: &str) -> u64 {
        egress
            .policy
            .metrics
            .egress_refused
            .with_label_values(&[reason])
            .get()
    }

    #[test]
    fn accepts_http_and_https_with_a_host() {
        let any = egress(&[], true);
        for url in [
            "http://api.example/hook",
            "https://api.example:8443/hook?x=1",
            "http://127.0.0.1:9000/",
            "http://[::1]:9000/",
        ] {
            let parsed = any.check_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                parsed.as_str().trim_end_matches('/'),
                url.trim_end_matches('/')
            );
        }
    }

    #[test]
    fn refuses_bad_urls() {
        let any = egress(&[], true);
        for url in ["not a url", "/relative", "http://"] {
            let error = any.check_url(url).expect_err(url);
            assert!(matches!(error, EgressError::Invalid(_)), "{url}: {error:?}");
        }
        for url in ["ftp://api.example/", "mailto:x@api.example"] {
            let error = any.check_url(url).expect_err(url);
            assert!(matches!(error, EgressError::Scheme(_)), "{url}: {error:?}");
        }
        let error = any
            .check_url("http://user:pw@api.example/")
            .expect_err("userinfo");
        assert_eq!(error, EgressError::UserInfo);
        assert_eq!(
            refusals(&any, "host_not_allowed"),
            0,
            "bad input is not a refusal"
        );
    }

    #[test]
    fn enforces_the_allow_list_by_host_or_host_and_port() {
        let listed = egress(&["API.example", "hooks.example:8443", "[::1]:9000"], false);
        for url in [
            "https://api.example/x",
            "http://api.example:1234/x",
            "https://hooks.example:8443/x",
            "http://[::1]:9000/",
        ] {
            assert!(listed.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "https://other.example/",
            "https://hooks.example/",
            "http://[::1]:9001/",
        ] {
            let error = listed.check_url(url).expect_err(url);
            assert!(
                matches!(error, EgressError::HostNotAllowed(_)),
                "{url}: {error:?}"
            );
        }
        assert_eq!(refusals(&listed, "host_not_allowed"), 3);
    }

    #[test]
    fn refuses_private_ip_literals_unless_allowed_or_listed() {
        let strict = egress(&[], false);
        for url in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let error = strict.check_url(url).expect_err(url);
            assert!(
                matches!(error, EgressError::PrivateAddress(_)),
                "{url}: {error:?}"
            );
        }
        assert_eq!(refusals(&strict, "private_address"), 6);
        assert!(strict.check_url("http://93.184.215.14/").is_ok());
        assert!(
            strict.check_url("http://localhost:9000/").is_ok(),
            "names are checked on connect"
        );
        assert!(egress(&[], true)
            .check_url("http://127.0.0.1:9000/")
            .is_ok());
        assert!(egress(&["127.0.0.1"], false)
            .check_url("http://127.0.0.1:9000/")
            .is_ok());
    }

    #[test]
    fn classifies_private_addresses() {
        let private = [
            "127.0.0.1",
            "127.255.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ];
        for ip in private {
            assert!(is_private(ip.parse().unwrap()), "{ip} is private");
        }
        let public = [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in public {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn allow_list_entries_name_their_host() {
        assert_eq!(entry_host("api.example"), "api.example");
        assert_eq!(entry_host("api.example:8443"), "api.example");
        assert_eq!(entry_host("[::1]:9000"), "::1");
        assert_eq!(entry_host("[::1]"), "::1");
    }

    #[tokio::test]
    async fn the_resolver_drops_private_addresses_unless_the_name_is_listed() {
        let strict = PublicResolver {
            policy: egress(&[], false).policy,
        };
        let error = match strict.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        assert!(
            matches!(error.downcast_ref::<EgressError>(), Some(EgressError::PrivateAddress(h)) if h == "localhost"),
            "{error}"
        );
        let listed = PublicResolver {
            policy: egress(&["localhost:9000"], false).policy,
        };
        let addrs: Vec<SocketAddr> = listed
            .resolve("localhost".parse().unwrap())
            .await
            .expect("a listed name resolves")
            .collect();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(),
            "{addrs:?}"
        );
    }
}
