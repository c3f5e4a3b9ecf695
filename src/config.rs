//! Configuration: embedded defaults < TOML file < command-line flags (and their
//! environment variables), merged once at start-up into typed values so that nothing
//! downstream re-parses a string.
//!
//! Every key is documented here and in the configuration table of `docs/api.md`; a
//! test checks that the two agree so the docs cannot drift from `Config::default()`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::shard::ShardHold;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a key of the wrong type or an unknown key.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file that was asked for.
        path: PathBuf,
        /// What the TOML parser said, naming the key.
        source: toml::de::Error,
    },
    /// A value parsed but is out of range.
    #[error("invalid config value `{key}`: {message}")]
    Invalid {
        /// The dotted key, e.g. `retention.max_events`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Replays served at once per worker thread by default (`stream.replays_at_once =
/// 0`). A replay is CPU work on the worker threads with no wait in it, so more at
/// once only queue a publish behind more of them: on one core, a storm of 200
/// clients reconnecting with `cursor=earliest` got about 1 550 replays a second at
/// 1, 2, or 4 at once alike, with publish p99 0.9, 1.5 and 2.6 ms
/// (docs/loadtest.md, "storm").
pub const REPLAYS_PER_WORKER: usize = 1;

/// Most proxies at once: each is an actor with its own index and mailbox, and a
/// proxy per few sessions would cost more than it spreads.
pub const MAX_PROXIES: usize = 1024;

/// The whole server configuration. Unknown keys are an error, so a typo is caught at
/// start-up instead of silently falling back to a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Broker shards (spread over the HTTP worker threads); 0 means one per CPU core.
    pub shards: usize,
    /// Event proxies holding client subscriptions; 0 means one per CPU core.
    pub proxies: usize,
    /// Accounts allowed to publish and subscribe. With none configured, `serve`
    /// generates one development account and prints it at start-up.
    #[serde(rename = "account")]
    pub accounts: Vec<AccountConfig>,
    /// How long and how much is kept for replay and for disconnected clients.
    pub retention: RetentionConfig,
    /// Signed-URL policy.
    pub auth: AuthConfig,
    /// Streaming connection settings.
    pub stream: StreamConfig,
    /// Publish endpoint limits.
    pub publish: PublishConfig,
    /// Growing and shrinking the shards with load.
    pub scaling: ScalingConfig,
    /// Cross-origin settings for browser-facing endpoints.
    pub cors: CorsConfig,
    /// Webhook subscriptions (callbacks to API servers).
    pub webhook: WebhookConfig,
    /// The simulated telephone network.
    pub sim: SimConfig,
    /// The built-in call router.
    pub call_router: CallRouterConfig,
    /// Per-tenant quotas and rates (docs/api.md §8).
    pub limits: LimitsConfig,
    /// Seconds between the start of a drain (SIGTERM) and closing the streams: time
    /// for load balancers to see `/readyz` fail while the server still answers.
    pub drain_grace_secs: u64,
    /// Longest the rest of a drain takes after `drain_grace_secs` (calls ending,
    /// streams flushing, webhooks delivering): then the process exits 0 anyway,
    /// what was not delivered dropped (or, with `data_dir`, kept).
    pub drain_timeout_secs: u64,
    /// What the router may request on a tenant's behalf (docs/api.md §5).
    pub egress: EgressConfig,
    /// Cluster mode: several nodes joined through NATS JetStream (docs/api.md §8).
    pub cluster: ClusterConfig,
    /// Where the node keeps what must survive a restart (docs/durability.md);
    /// empty (the default): nothing is kept.
    pub data_dir: String,
    /// The password of the admin endpoints (`GET /v1/Admin/Topology`), with user
    /// `admin` in Basic credentials; empty (the default) turns them off.
    pub admin_token: String,
    /// Not a setting: the integration tests' way to keep shard queues full
    /// ([`ShardHold`]). Skipped by serde, so no config file can set it.
    #[serde(skip)]
    #[doc(hidden)]
    pub shard_hold: Option<ShardHold>,
}

/// One account: its sid and secret token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// `AC` followed by 32 lowercase hex digits.
    pub sid: String,
    /// The shared secret used for Basic auth and URL signatures.
    pub auth_token: String,
}

/// Signed-URL policy (docs/api.md §4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Longest a signed URL may live: one whose `expires` is further ahead than this
    /// many seconds is refused (401 `expires_too_far`), so a leaked URL cannot be
    /// minted to work for years and no `expires` value reaches time arithmetic
    /// unbounded.
    pub max_url_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_url_lifetime_secs: 86_400,
        }
    }
}

/// Retention of events for replay and for clients that are away.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Oldest event kept, in seconds.
    pub max_age_secs: u64,
    /// Most events kept per client.
    pub max_events: usize,
    /// Most events each broker shard keeps for `cursor=earliest` replays.
    pub shard_max_events: usize,
    /// With `data_dir`: most events the node's event log keeps on disk (the
    /// oldest go first; `max_age_secs` holds too).
    pub store_max_events: usize,
}

/// Streaming connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Seconds of silence after which an SSE comment heartbeat is written (the spec
    /// asks for at most 15).
    pub heartbeat_secs: u64,
    /// How long a subscription without `expires` outlives its last connection, in
    /// seconds.
    pub idle_ttl_secs: u64,
    /// The SSE `retry:` a stream announces: how long an `EventSource` waits before
    /// reconnecting, in milliseconds.
    pub retry_ms: u64,
    /// Seconds after which the server ends a streaming connection (the client
    /// reconnects and resumes by cursor); 0 keeps connections open indefinitely.
    pub max_connection_secs: u64,
    /// Longest `timeout=` a long-poll may ask for, in seconds.
    pub max_poll_secs: u64,
    /// Shortest time between two writes of events to one SSE or WebSocket stream, in
    /// milliseconds: an event that comes sooner after the last write waits for the
    /// rest of it and shares the next write with whatever else arrived meanwhile
    /// (Centrifugo's `write_delay`). An event after a quiet spell is written at
    /// once. 0 writes every wake-up on its own.
    pub write_interval_ms: u64,
    /// Serve plain `GET`s of the stream route and small event `POST`s on the lane
    /// (`src/http/front/`): same responses, without actix-http's per-connection
    /// buffers and, for publishes, without actix-web's routing. `false` sends every
    /// connection through actix-http's dispatcher.
    pub lane: bool,
    /// Most `cursor=earliest` replays served at once by the whole node, from the
    /// request until the replayed events' first write. A replay is the heaviest
    /// thing a client can ask (everything retained, read, merged and written), and
    /// a storm of them sharing the worker threads with publishes would be publish
    /// latency; beyond this many, a replay waits its turn (up to 10 s, then 503
    /// `replays_busy` with `Retry-After`). 0 means [`REPLAYS_PER_WORKER`] per HTTP
    /// worker thread.
    pub replays_at_once: usize,
}

/// Publish endpoint limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Most events in one request (JSON array or NDJSON).
    pub max_batch: usize,
    /// Largest single event, in bytes of JSON.
    pub max_event_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Publish batches a shard may have queued before publishes are refused with 503.
    pub shard_queue: usize,
}

/// How the supervisors grow and shrink the shards and the proxies (docs/api.md §8,
/// "Scaling inside a node"). With `shards_min = shards_max` (the default: both 0,
/// meaning `shards`) the shard count stays fixed, and likewise for proxies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Fewest shards; 0 means `shards`.
    pub shards_min: usize,
    /// Most shards; 0 means `shards`.
    pub shards_max: usize,
    /// Fewest proxies; 0 means `proxies`.
    pub proxies_min: usize,
    /// Most proxies; 0 means `proxies`.
    pub proxies_max: usize,
    /// Client sessions a proxy is meant to hold: once every proxy holds this many,
    /// one is added; once all sessions would fit in one proxy fewer at half of it,
    /// the least loaded is retired and its sessions moved.
    pub sessions_per_proxy: usize,
    /// Events per second of one shard above which a shard is added.
    pub shard_high_events_per_sec: u64,
    /// Share of its time one shard spends routing (above 0, at most 1) above which
    /// a shard is added.
    pub shard_high_busy: f64,
    /// Events per second per shard, counted on one shard fewer, below which the
    /// least busy shard is retired.
    pub shard_low_events_per_sec: u64,
    /// How long the load must stay below the low mark before a shard is retired.
    pub retire_after_secs: u64,
    /// How often the supervisor looks, in milliseconds.
    pub interval_ms: u64,
}

/// Cross-origin settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the stream, control and client-event endpoints;
    /// `["*"]` allows any (those endpoints carry their own authentication).
    pub allowed_origins: Vec<String>,
}

/// Webhook delivery to API servers' callbacks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Hosts callbacks may point at (`host` or `host:port`); empty allows any host.
    /// Callbacks are an SSRF risk: list your API servers here in production.
    pub allowed_hosts: Vec<String>,
    /// First retry delay in milliseconds; doubles per failure, with full jitter.
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in seconds.
    pub max_backoff_secs: u64,
    /// Timeout of one callback request, in seconds.
    pub timeout_secs: u64,
    /// Most events in one callback request.
    pub max_batch: usize,
    /// On SIGTERM, seconds webhook workers get to deliver what is queued before the
    /// process exits; what is still undelivered then is given up (counted in
    /// `switchboard_webhook_giveups_total` and logged).
    pub drain_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allowed_hosts: Vec::new(),
            initial_backoff_ms: 500,
            max_backoff_secs: 60,
            timeout_secs: 10,
            max_batch: 100,
            drain_secs: 5,
        }
    }
}

/// Cluster mode (docs/api.md §8, docs/cluster.md): with a NATS URL, publishes go into a
/// JetStream stream, acknowledged before `202`, and every node delivers what the
/// stream holds to its own clients. Without one the node is standalone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server (`nats://host:port`, JetStream on); empty = standalone.
    pub nats_url: String,
    /// This node's name in logs, metrics and NATS; empty = `node-` and random hex.
    pub node_id: String,
    /// The JetStream stream the nodes share, created if missing: letters, digits,
    /// `_` and `-`, at most 32. Its subjects are `<stream>.<AccountSid>.<slot>`.
    pub stream: String,
    /// How long a node keeps reading an account after its last client session
    /// there ended, so a client that reconnects at once finds it reading (1 to
    /// 3600).
    pub consumer_grace_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            node_id: String::new(),
            stream: "SWITCHBOARD".to_owned(),
            consumer_grace_secs: 30,
        }
    }
}

impl ClusterConfig {
    /// Whether this node joins a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats_url.is_empty()
    }

    /// A stream name JetStream takes and subjects can start with; a node id NATS
    /// can carry as a client name.
    fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = |text: &str, max: usize| {
            !text.is_empty()
                && text.len() <= max
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !name_ok(&self.stream, 32) {
            return Err(ConfigError::Invalid {
                key: "cluster.stream",
                message: "letters, digits, `_` and `-`, 1 to 32 of them".into(),
            });
        }
        if !self.node_id.is_empty() && !name_ok(&self.node_id, 64) {
            return Err(ConfigError::Invalid {
                key: "cluster.node_id",
                message: "letters, digits, `_` and `-`, at most 64 of them".into(),
            });
        }
        if !(1..=3600).contains(&self.consumer_grace_secs) {
            return Err(ConfigError::Invalid {
                key: "cluster.consumer_grace_secs",
                message: "from 1 to 3600 seconds".into(),
            });
        }
        if self.enabled() && !self.nats_url.starts_with("nats://") {
            return Err(ConfigError::Invalid {
                key: "cluster.nats_url",
                message: "a `nats://host:port` URL, or empty for a standalone node".into(),
            });
        }
        Ok(())
    }
}

/// Egress rules for webhooks and the call router's application requests (docs/api.md §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Whether tenants' webhooks and applications may be on loopback, private,
    /// link-local, shared, unique-local, multicast or unspecified addresses (hosts in
    /// `webhook.allowed_hosts` always may). Unset, it is decided at start by
    /// [`EgressConfig::resolve`]: allowed with the generated development account, so a
    /// laptop walk-through can point at `127.0.0.1`, and refused once real accounts
    /// are configured, where such a request would be SSRF into the operator's network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_private_networks: Option<bool>,
}

impl EgressConfig {
    /// Fixes `allow_private_networks` once at start: an explicit value wins, else
    /// true only when the server runs with the generated development account.
    pub fn resolve(&mut self, development_account: bool) {
        self.allow_private_networks
            .get_or_insert(development_account);
    }

    /// The resolved setting; unresolved counts as refused (the safe side).
    pub fn private_networks_allowed(&self) -> bool {
        self.allow_private_networks.unwrap_or(false)
    }
}

/// The built-in call router.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallRouterConfig {
    /// Base URL of a remote event router (`http://host:port`) to publish call events
    /// to over its publish endpoint, with each account's credentials; empty publishes
    /// into this process.
    pub publish_url: String,
    /// Ended calls, and messages, each account keeps for the REST API; older ones
    /// are forgotten. Per account, so one tenant cannot push out another's records.
    pub keep_ended: usize,
    /// Longest a call may last, in simulated seconds (scaled by `sim.time_scale`); a
    /// call's own `TimeLimit` may only ask for less. Bounds what a call nobody hangs
    /// up holds (docs/api.md §7).
    pub max_call_secs: u64,
}

impl Default for CallRouterConfig {
    fn default() -> Self {
        CallRouterConfig {
            publish_url: String::new(),
            keep_ended: 1000,
            max_call_secs: 14_400,
        }
    }
}

/// Per-tenant quotas and rates (docs/api.md §8): what one account or client may hold or
/// send, so one tenant cannot exhaust memory, CPU or the shards' queues for all the
/// others. Counts over a quota answer 429 `quota_exceeded`; rates over a limit answer
/// 429 `rate_limited` with `Retry-After`. The defaults are generous for a real
/// deployment (a contact centre's agents and supervisors, a busy trunk) but bounded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Client sessions (distinct client ids with state on the server) per account.
    pub sessions_per_account: usize,
    /// Subscriptions one client may hold, stream URLs and control channel together.
    pub subscriptions_per_client: usize,
    /// Webhook (`callback`) subscriptions per account: each one is a delivery queue
    /// and outbound requests.
    pub webhooks_per_account: usize,
    /// Calls an account may have running at once (inbound and REST-placed; the legs
    /// a call dials are bounded by their parent call).
    pub calls_per_account: usize,
    /// Terms in one filter: `types` entries plus `where` clauses. Every event of the
    /// account is matched against them.
    pub filter_terms: usize,
    /// Events per second an account may publish, sustained.
    pub publish_per_sec: u32,
    /// Events an account may publish at once above the sustained rate; at least
    /// `publish.max_batch`, so a full batch can always pass.
    pub publish_burst: u32,
    /// Client events per second one client may send, sustained.
    pub client_events_per_sec: u32,
    /// Client events one client may send at once above the sustained rate.
    pub client_events_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            sessions_per_account: 10_000,
            subscriptions_per_client: 100,
            webhooks_per_account: 100,
            calls_per_account: 1000,
            filter_terms: 32,
            publish_per_sec: 10_000,
            publish_burst: 20_000,
            client_events_per_sec: 10,
            client_events_burst: 20,
        }
    }
}

/// The simulated telephone network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Multiplier on every simulated duration: 1.0 is real time, 0.01 is a hundred
    /// times faster.
    pub time_scale: f64,
    /// Simulated seconds before a dialled far end answers.
    pub ring_secs: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shards: 0,
            proxies: 0,
            accounts: Vec::new(),
            retention: RetentionConfig::default(),
            auth: AuthConfig::default(),
            stream: StreamConfig::default(),
            publish: PublishConfig::default(),
            scaling: ScalingConfig::default(),
            cors: CorsConfig::default(),
            webhook: WebhookConfig::default(),
            sim: SimConfig::default(),
            call_router: CallRouterConfig::default(),
            limits: LimitsConfig::default(),
            drain_grace_secs: 0,
            drain_timeout_secs: 30,
            egress: EgressConfig::default(),
            cluster: ClusterConfig::default(),
            admin_token: String::new(),
            data_dir: String::new(),
            shard_hold: None,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_secs: 300,
            max_events: 10_000,
            shard_max_events: 100_000,
            store_max_events: 1_000_000,
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            heartbeat_secs: 15,
            idle_ttl_secs: 300,
            retry_ms: 2000,
            max_connection_secs: 0,
            max_poll_secs: 60,
            write_interval_ms: 10,
            replays_at_once: 0,
            lane: true,
        }
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            max_batch: 1000,
            max_event_bytes: 64 * 1024,
            max_body_bytes: 8 * 1024 * 1024,
            shard_queue: 1024,
        }
    }
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            shards_min: 0,
            shards_max: 0,
            proxies_min: 0,
            proxies_max: 0,
            sessions_per_proxy: 10_000,
            shard_high_events_per_sec: 50_000,
            shard_high_busy: 0.8,
            shard_low_events_per_sec: 5_000,
            retire_after_secs: 60,
            interval_ms: 1000,
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".to_string()],
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            time_scale: 1.0,
            ring_secs: 1.0,
        }
    }
}

/// What the command line can override. Each flag also reads an environment variable,
/// so containers can be configured without a file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; without one, embedded defaults are used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, overriding `listen` from the file.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Number of broker shards, overriding `shards` from the file.
    #[arg(long, env = "SWITCHBOARD_SHARDS")]
    pub shards: Option<usize>,
    /// Publish call events to this remote event router instead of in-process,
    /// overriding `call_router.publish_url`.
    #[arg(long, env = "SWITCHBOARD_PUBLISH_URL")]
    pub publish_url: Option<String>,
    /// Join a cluster through this NATS server (JetStream on), overriding
    /// `cluster.nats_url`.
    #[arg(long, env = "SWITCHBOARD_NATS")]
    pub nats: Option<String>,
    /// Keep what must survive a restart in this directory, overriding `data_dir`.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<String>,
}

impl Config {
    /// Merges embedded defaults, the file named by `args.config` and the flags, then
    /// validates the result.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if let Some(shards) = args.shards {
            config.shards = shards;
        }
        if let Some(url) = &args.nats {
            config.cluster.nats_url = url.clone();
        }
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &args.publish_url {
            config.call_router.publish_url = url.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses one TOML file (no validation).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks ranges and account credentials.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for account in &self.accounts {
            if !crate::account::is_account_sid(&account.sid) {
                return Err(ConfigError::Invalid {
                    key: "account.sid",
                    message: format!(
                        "`{}` is not AC followed by 32 lowercase hex digits",
                        account.sid
                    ),
                });
            }
            if account.auth_token.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "account.auth_token",
                    message: format!("account {} has an empty token", account.sid),
                });
            }
            if account.auth_token.len() > crate::auth::MAX_TOKEN_BYTES {
                return Err(ConfigError::Invalid {
                    key: "account.auth_token",
                    message: format!(
                        "account {}'s token is longer than {} bytes",
                        account.sid,
                        crate::auth::MAX_TOKEN_BYTES
                    ),
                });
            }
        }
        self.cluster.validate()?;
        let positive = [
            (
                "retention.max_age_secs",
                self.retention.max_age_secs as usize,
            ),
            ("retention.max_events", self.retention.max_events),
            (
                "auth.max_url_lifetime_secs",
                usize::try_from(self.auth.max_url_lifetime_secs).unwrap_or(usize::MAX),
            ),
            (
                "retention.shard_max_events",
                self.retention.shard_max_events,
            ),
            (
                "retention.store_max_events",
                self.retention.store_max_events,
            ),
            (
                "webhook.initial_backoff_ms",
                self.webhook.initial_backoff_ms as usize,
            ),
            (
                "webhook.max_backoff_secs",
                self.webhook.max_backoff_secs as usize,
            ),
            ("webhook.timeout_secs", self.webhook.timeout_secs as usize),
            ("webhook.max_batch", self.webhook.max_batch),
            ("stream.heartbeat_secs", self.stream.heartbeat_secs as usize),
            ("publish.max_batch", self.publish.max_batch),
            ("publish.max_event_bytes", self.publish.max_event_bytes),
            ("publish.max_body_bytes", self.publish.max_body_bytes),
            ("publish.shard_queue", self.publish.shard_queue),
            (
                "limits.sessions_per_account",
                self.limits.sessions_per_account,
            ),
            (
                "limits.subscriptions_per_client",
                self.limits.subscriptions_per_client,
            ),
            (
                "limits.webhooks_per_account",
                self.limits.webhooks_per_account,
            ),
            ("limits.calls_per_account", self.limits.calls_per_account),
            ("limits.filter_terms", self.limits.filter_terms),
            (
                "limits.publish_per_sec",
                self.limits.publish_per_sec as usize,
            ),
            (
                "limits.client_events_per_sec",
                self.limits.client_events_per_sec as usize,
            ),
            (
                "limits.client_events_burst",
                self.limits.client_events_burst as usize,
            ),
            ("call_router.keep_ended", self.call_router.keep_ended),
            (
                "call_router.max_call_secs",
                usize::try_from(self.call_router.max_call_secs).unwrap_or(usize::MAX),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".into(),
                });
            }
        }
        if self.admin_token.len() > crate::auth::MAX_TOKEN_BYTES {
            return Err(ConfigError::Invalid {
                key: "admin_token",
                message: format!("must be at most {} bytes", crate::auth::MAX_TOKEN_BYTES),
            });
        }
        let slots = crate::actors::distributor::SLOTS;
        for (key, count) in [
            ("shards", self.shards),
            ("scaling.shards_min", self.scaling.shards_min),
            ("scaling.shards_max", self.scaling.shards_max),
        ] {
            if count > slots {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("must be at most {slots} (the slots calls hash to)"),
                });
            }
        }
        let (min, max) = self.shard_bounds();
        if min > max {
            return Err(ConfigError::Invalid {
                key: "scaling.shards_min",
                message: format!("must not exceed scaling.shards_max ({max})"),
            });
        }
        let (min, max) = self.proxy_bounds();
        if min > max {
            return Err(ConfigError::Invalid {
                key: "scaling.proxies_min",
                message: format!("must not exceed scaling.proxies_max ({max})"),
            });
        }
        if self.scaling.proxies_max > MAX_PROXIES || self.proxies > MAX_PROXIES {
            return Err(ConfigError::Invalid {
                key: if self.proxies > MAX_PROXIES {
                    "proxies"
                } else {
                    "scaling.proxies_max"
                },
                message: format!("must be at most {MAX_PROXIES}"),
            });
        }
        let busy = self.scaling.shard_high_busy;
        if !(busy > 0.0 && busy <= 1.0) {
            return Err(ConfigError::Invalid {
                key: "scaling.shard_high_busy",
                message: "must be above 0 and at most 1 (a share of the time)".into(),
            });
        }
        if self.scaling.sessions_per_proxy == 0 {
            return Err(ConfigError::Invalid {
                key: "scaling.sessions_per_proxy",
                message: "must be greater than 0".into(),
            });
        }
        if self.scaling.shard_low_events_per_sec >= self.scaling.shard_high_events_per_sec {
            return Err(ConfigError::Invalid {
                key: "scaling.shard_low_events_per_sec",
                message: "must be below scaling.shard_high_events_per_sec, or a shard \
                          added for load would be retired at once"
                    .into(),
            });
        }
        if self.scaling.interval_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "scaling.interval_ms",
                message: "must be greater than 0".into(),
            });
        }
        if (self.limits.publish_burst as usize) < self.publish.max_batch {
            return Err(ConfigError::Invalid {
                key: "limits.publish_burst",
                message: format!(
                    "must be at least publish.max_batch ({}), or a full batch could never pass",
                    self.publish.max_batch
                ),
            });
        }
        if !self.call_router.publish_url.is_empty() {
            let valid = reqwest::Url::parse(&self.call_router.publish_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !valid {
                return Err(ConfigError::Invalid {
                    key: "call_router.publish_url",
                    message: "must be an http(s) URL such as http://127.0.0.1:8080".into(),
                });
            }
        }
        if !(self.sim.time_scale > 0.0 && self.sim.time_scale.is_finite()) {
            return Err(ConfigError::Invalid {
                key: "sim.time_scale",
                message: "must be a positive number".into(),
            });
        }
        if !(self.sim.ring_secs >= 0.0 && self.sim.ring_secs.is_finite()) {
            return Err(ConfigError::Invalid {
                key: "sim.ring_secs",
                message: "must be zero or a positive number".into(),
            });
        }
        Ok(())
    }

    /// The shard counts the supervisor keeps within, 0s resolved (see
    /// [`ScalingConfig`]).
    pub fn shard_bounds(&self) -> (usize, usize) {
        let shards = Config::resolve_count(self.shards).min(crate::actors::distributor::SLOTS);
        let or_shards = |n: usize| if n == 0 { shards } else { n };
        (
            or_shards(self.scaling.shards_min),
            or_shards(self.scaling.shards_max),
        )
    }

    /// The proxy counts the proxy supervisor keeps within, 0s resolved (see
    /// [`ScalingConfig`]).
    pub fn proxy_bounds(&self) -> (usize, usize) {
        let proxies = Config::resolve_count(self.proxies);
        let or_proxies = |n: usize| if n == 0 { proxies } else { n };
        (
            or_proxies(self.scaling.proxies_min),
            or_proxies(self.scaling.proxies_max),
        )
    }

    /// `stream.replays_at_once` with 0 resolved for `workers` worker threads.
    pub fn replays_at_once(&self, workers: usize) -> usize {
        match self.stream.replays_at_once {
            0 => REPLAYS_PER_WORKER * workers.max(1),
            n => n,
        }
    }

    /// Worker, shard or proxy count with 0 resolved to the number of cores.
    pub fn resolve_count(configured: usize) -> usize {
        if configured > 0 {
            configured
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Heartbeat interval as a `Duration`.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.stream.heartbeat_secs)
    }

    /// `stream.write_interval_ms` as a `Duration`.
    pub fn write_interval(&self) -> Duration {
        Duration::from_millis(self.stream.write_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Flattens a TOML table into dotted keys; arrays of tables stay whole.
    fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&name, value, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }

    #[test]
    fn cluster_settings_are_checked_by_name() {
        let with = |change: fn(&mut ClusterConfig)| {
            let mut config = Config::default();
            change(&mut config.cluster);
            config.validate()
        };
        assert!(with(|_| {}).is_ok(), "standalone by default");
        assert!(with(|c| c.nats_url = "nats://127.0.0.1:4222".into()).is_ok());
        for (key, change) in [
            (
                "cluster.nats_url",
                (|c: &mut ClusterConfig| c.nats_url = "http://x".into()) as fn(&mut ClusterConfig),
            ),
            ("cluster.stream", |c| c.stream = "a.b".into()),
            ("cluster.stream", |c| c.stream = String::new()),
            ("cluster.stream", |c| c.stream = "s".repeat(33)),
            ("cluster.node_id", |c| c.node_id = "node 1".into()),
            ("cluster.consumer_grace_secs", |c| c.consumer_grace_secs = 0),
            ("cluster.consumer_grace_secs", |c| {
                c.consumer_grace_secs = 3601
            }),
        ] {
            match with(change) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: expected an error naming it, got {other:?}"),
            }
        }
    }

    /// The key table of `docs/api.md` and `Config::default()` must agree, key for key.
    #[test]
    fn the_api_reference_documents_every_key_with_its_default() {
        let reference = include_str!("../docs/api.md");
        let mut documented = BTreeMap::new();
        for line in reference.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[1].starts_with('`') || !cells[2].starts_with('`') {
                continue;
            }
            let key = cells[1].trim_matches('`');
            let default = cells[2].trim_matches('`');
            let parsed: toml::Table = toml::from_str(&format!("v = {default}"))
                .unwrap_or_else(|e| panic!("docs/api.md default of {key} is not TOML: {e}"));
            documented.insert(key.to_owned(), parsed["v"].clone());
        }
        let mut actual = BTreeMap::new();
        flatten(
            "",
            &toml::Value::try_from(Config::default()).unwrap(),
            &mut actual,
        );
        // `[[account]]` serialises as an empty array under its TOML name.
        assert_eq!(documented, actual);
    }

    #[test]
    fn private_networks_default_to_allowed_only_with_the_development_account() {
        let mut development = EgressConfig::default();
        development.resolve(true);
        assert!(development.private_networks_allowed());
        let mut configured = EgressConfig::default();
        configured.resolve(false);
        assert!(!configured.private_networks_allowed());
        for explicit in [true, false] {
            for development_account in [true, false] {
                let mut config = EgressConfig {
                    allow_private_networks: Some(explicit),
                };
                config.resolve(development_account);
                assert_eq!(config.private_networks_allowed(), explicit, "explicit wins");
            }
        }
        assert!(
            !EgressConfig::default().private_networks_allowed(),
            "unresolved refuses"
        );
        let parsed: Config = toml::from_str("[egress]\nallow_private_networks = true\n").unwrap();
        assert_eq!(parsed.egress.allow_private_networks, Some(true));
    }

    #[test]
    fn tokens_must_fit_basic_credentials() {
        let account = |len: usize| AccountConfig {
            sid: "AC00000000000000000000000000000b0b".into(),
            auth_token: "t".repeat(len),
        };
        let mut config = Config {
            accounts: vec![account(crate::auth::MAX_TOKEN_BYTES)],
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        config.accounts = vec![account(crate::auth::MAX_TOKEN_BYTES + 1)];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("account.auth_token"), "{err}");
        assert!(!err.contains("tttt"), "the token is not echoed: {err}");
    }

    #[test]
    fn limits_must_let_something_through() {
        let mut config = Config::default();
        config.limits.publish_burst = (config.publish.max_batch - 1) as u32;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.publish_burst"), "{err}");
        let mut config = Config::default();
        config.limits.subscriptions_per_client = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.subscriptions_per_client"), "{err}");
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn shards_fit_the_slots_calls_hash_to() {
        let slots = crate::actors::distributor::SLOTS;
        let config = Config {
            shards: slots,
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        let config = Config {
            shards: slots + 1,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`shards`") && err.contains("1024"), "{err}");
    }

    #[test]
    fn scaling_keys_are_checked_and_named() {
        let refused = |change: fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        let err = refused(|c| c.scaling.shard_high_busy = 1.5);
        assert!(err.contains("scaling.shard_high_busy"), "{err}");
        let err = refused(|c| c.scaling.shard_high_busy = f64::NAN);
        assert!(err.contains("scaling.shard_high_busy"), "{err}");
        let err = refused(|c| c.scaling.sessions_per_proxy = 0);
        assert!(err.contains("scaling.sessions_per_proxy"), "{err}");
        let err = refused(|c| {
            c.scaling.proxies_min = 3;
            c.scaling.proxies_max = 2;
        });
        assert!(err.contains("scaling.proxies_min"), "{err}");
        let err = refused(|c| c.scaling.proxies_max = MAX_PROXIES + 1);
        assert!(err.contains("scaling.proxies_max"), "{err}");
        let config = Config {
            proxies: 2,
            ..Config::default()
        };
        assert_eq!(config.proxy_bounds(), (2, 2), "0s mean `proxies`");
        assert_eq!(config.replays_at_once(3), 3 * REPLAYS_PER_WORKER);
    }

    #[test]
    fn file_flags_and_validation() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9\"\nshards = 3\n[retention]\nmax_events = 5\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:10".parse().unwrap()),
            shards: None,
            publish_url: None,
            nats: Some("nats://127.0.0.1:4222".into()),
            data_dir: Some("/var/lib/switchboard".into()),
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.listen.port(), 10, "flags override the file");
        assert_eq!(config.data_dir, "/var/lib/switchboard");
        assert_eq!(config.cluster.nats_url, "nats://127.0.0.1:4222");
        assert!(config.cluster.enabled());
        assert_eq!(config.shards, 3);
        assert_eq!(config.retention.max_events, 5);
        assert_eq!(config.retention.max_age_secs, 300, "defaults fill the rest");

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        std::fs::write(&path, "[[account]]\nsid = \"AC1\"\nauth_token = \"t\"\n").unwrap();
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("account.sid"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
