//! Every Prometheus metric of the server, registered in one registry owned by the app
//! (not a global), so each in-process test server has its own numbers.
//!
//! Labels are low-cardinality by construction: type families are folded into a fixed
//! list, and no account, call or client id is ever a label.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Type families that get their own label value; everything else is `other`.
const FAMILIES: &[&str] = &[
    "call",
    "say",
    "play",
    "gather",
    "record",
    "dial",
    "redirect",
    "conference",
    "queue",
    "message",
    "client",
    "stream",
];

/// How a caller left a queue, the `result` label of `switchboard_queue_wait_seconds`
/// (Twilio's `QueueResult` values the simulator produces).
pub const QUEUE_RESULTS: &[&str] = &[
    "bridged",
    "leave",
    "hangup",
    "redirected",
    "queue-full",
    "error",
];

/// Buckets of `switchboard_queue_wait_seconds`: simulated seconds, from a caller
/// taken at once to an hour on hold.
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Client connection transports, the `transport` label of connections.
pub const STREAM_TRANSPORTS: &[&str] = &["sse", "poll", "ws"];

/// Every way an event leaves the router, the `transport` label of deliveries.
pub const TRANSPORTS: &[&str] = &["sse", "poll", "ws", "webhook"];

/// Where an accepted HTTP connection's first request was served, the `path` label
/// of `switchboard_http_connections_total`: the front door's lane (streams and
/// publishes), or actix-http's dispatcher.
pub const CONNECTION_PATHS: &[&str] = &["lane", "dispatcher"];

/// Subscription kinds, the `transport` label of `switchboard_subscriptions`.
pub const SUBSCRIPTION_TRANSPORTS: &[&str] = &["stream", "webhook"];

/// TwiML verbs, the `verb` label of `switchboard_twiml_verbs_total` (a fixed list,
/// so an application cannot mint label values with made-up verbs).
pub const VERBS: &[&str] = &[
    "Say", "Play", "Pause", "Gather", "Record", "Dial", "Message", "Redirect", "Hangup", "Reject",
    "Enqueue", "Leave", "unknown",
];

/// Why a publish was refused, the `reason` label of `switchboard_publish_rejected_total`.
pub const REJECT_REASONS: &[&str] = &[
    "invalid",
    "too_large",
    "auth",
    "overload",
    "draining",
    "backbone",
    "store",
];

/// Actors run so that they restart in place, the `actor` label of
/// `switchboard_actor_restarts_total`.
pub const RESTARTED_ACTORS: &[&str] = &["shard", "proxy", "supervisor"];

/// Why a signed control-channel request was refused, the `reason` label of
/// `switchboard_control_refused_total`.
pub const CONTROL_REFUSALS: &[&str] = &["method_not_signed", "method_invalid"];

/// Registers metrics in one registry; the only place that can fail is a programming
/// error (a duplicate or malformed name), caught by the first test that builds one.
struct Registrar<'r>(&'r Registry);

impl Registrar<'_> {
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn float_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        self.add(CounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: prometheus::Result<M>,
    ) -> M {
        let metric = metric.expect("valid metric definition");
        self.0
            .register(Box::new(metric.clone()))
            .expect("unique metric name");
        metric
    }
}

/// All metrics, cheap to clone handles inside.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events accepted by the publish endpoint, by type family.
    pub published: IntCounterVec,
    /// Events written to a client connection, by transport.
    pub delivered: IntCounterVec,
    /// Writes of events to client connections (an SSE chunk, a WebSocket message
    /// batch, a long-poll answer), by transport: delivered / writes is how many
    /// events share a write, which is what a saturated fan-out's CPU depends on.
    pub delivery_writes: IntCounterVec,
    /// Publish requests refused, by reason (invalid, too_large, auth, overload, draining).
    pub publish_rejected: IntCounterVec,
    /// Authentication failures, by reason.
    pub auth_failures: IntCounterVec,
    /// Publish request latency: body read to 202.
    pub publish_latency: Histogram,
    /// Publish accepted → written to a client's socket, by transport.
    pub delivery_latency: HistogramVec,
    /// Open streaming connections, by transport.
    pub connections: IntGaugeVec,
    /// Accepted HTTP connections, by where their first request was served.
    pub http_connections: IntCounterVec,
    /// Client subscriptions held by proxies, by transport: `stream` for a client's
    /// publication channel (whichever protocol it connects with), `webhook` for
    /// callback subscriptions.
    pub subscriptions: IntGaugeVec,
    /// Aggregated (upstream) subscriptions held by shards, summed over shards.
    pub aggregated_subscriptions: IntGauge,
    /// Distinct filters held by proxies, summed over proxies: each is evaluated once
    /// per event for all the subscriptions that share it.
    pub proxy_filters: IntGauge,
    /// Filters checked against an event, by actor (`shard`, `proxy`): what matching
    /// costs, which aggregation keeps to one check per distinct filter.
    pub filter_evaluations: IntCounterVec,
    /// Client sessions alive (connected or caching).
    pub sessions: IntGauge,
    /// Client sessions by the proxy that holds them.
    pub proxy_sessions: IntGaugeVec,
    /// Virtual slots (of 1024) each shard owns: the calls it is given.
    pub shard_slots: IntGaugeVec,
    /// Events each shard routed: the load the shard supervisor scales by.
    pub shard_events: IntCounterVec,
    /// Seconds each shard spent routing: its busy time, which the shard supervisor
    /// also scales by (an event of many subscribers costs more than one of few).
    pub shard_busy: CounterVec,
    /// Shards the supervisor added and retired, by change (`added`, `retired`).
    pub shard_changes: IntCounterVec,
    /// Proxies the proxy supervisor added and retired, by change.
    pub proxy_changes: IntCounterVec,
    /// Client sessions moved from one proxy to another.
    pub sessions_moved: IntCounter,
    /// Publish batches a shard dropped because routing them panicked (a bug).
    pub shard_panics: IntCounter,
    /// Actors restarted in place, by actor (`shard`, `proxy`, `supervisor`) and
    /// cause (`panic`, `stop`).
    pub actor_restarts: IntCounterVec,
    /// Events retained in client outboxes.
    pub cached_events: IntGauge,
    /// Events evicted from an outbox before being written (reported as gaps).
    pub events_dropped: IntCounter,
    /// `stream.gap` notices written.
    pub gaps: IntCounter,
    /// Broker shards running.
    pub shards: IntGauge,
    /// Event proxies running.
    pub proxies: IntGauge,
    /// Work queued at each actor, maintained by the senders (actix cannot report it).
    pub mailbox_depth: IntGaugeVec,
    /// Events retained by broker shards for `cursor=earliest`.
    pub shard_retained: IntGauge,
    /// Reconnects and `cursor=earliest` requests served, by kind (`cursor`, `earliest`).
    pub replays: IntCounterVec,
    /// Events delivered again from a cache or retention by those replays.
    pub replayed_events: IntCounter,
    /// `cursor=earliest` replays holding one of the `stream.replays_at_once` turns.
    pub replays_in_progress: IntGauge,
    /// Cluster mode: 1 while connected to NATS, 0 while not (0 when standalone).
    pub backbone_connected: IntGauge,
    /// With `data_dir`: the size of the store's file on disk.
    pub store_bytes: IntGauge,
    /// With `data_dir`: the store's commits, by outcome (`ok`, `failed`).
    pub store_commits: IntCounterVec,
    /// With `data_dir`: events the event log keeps on disk.
    pub store_events: IntGauge,
    /// With `data_dir`: publish requests kept by one group commit.
    pub store_group_size: Histogram,
    /// With `data_dir`: messages retention dropped from the event log.
    pub store_pruned: IntCounter,
    /// With `data_dir`: events read back from the event log for resuming clients.
    pub store_history_events: IntCounter,
    /// Cluster mode: a publish's wait for JetStream's acknowledgement.
    pub backbone_publish_ack: Histogram,
    /// Cluster mode: publishes the backbone did not take, by reason (`unavailable`,
    /// `not_acknowledged`, `too_large`).
    pub backbone_publish_failures: IntCounterVec,
    /// Cluster mode: messages this node's consumer read from the stream.
    pub backbone_consumed: IntCounter,
    /// Cluster mode: messages stored in the stream that this node's consumer has not
    /// read yet, as of its last message.
    pub backbone_lag: IntGauge,
    /// Cluster mode: messages on the stream this node could not take, by reason
    /// (`subject`, `unknown_account`, `decode`, `check`, `info`; `client_entry`:
    /// a shared client entry).
    pub backbone_rejected: IntCounterVec,
    /// Cluster mode: messages the stream sent this node's consumer again (a delivery
    /// count above one, or a sequence already routed), skipped.
    pub backbone_redelivered: IntCounter,
    /// Cluster mode: events read back from the stream for clients resuming here.
    pub backbone_history_events: IntCounter,
    /// Cluster mode: accounts this node reads (one consumer each).
    pub backbone_consumers: IntGauge,
    /// Cluster mode: writes of shared client sessions, by outcome (`ok`, `failed`).
    pub backbone_shared_writes: IntCounterVec,
    /// Client events accepted, by how they came (`http`, `ws`).
    pub client_events: IntCounterVec,
    /// Client events refused before publishing, by how they came and why (`scope`,
    /// `act`, `call`: beyond the sender's grant; `url_invalid`, `url_refused`: a
    /// redirect's `data.url`).
    pub client_events_refused: IntCounterVec,
    /// URLs signed by `POST …/SignedUrls`, by the surface they open (`stream`,
    /// `client_events`, `control`).
    pub signed_urls: IntCounterVec,
    /// Scoped events a connection's own grant kept from it although one of its
    /// client's subscriptions matched them (docs/api.md §4: the grant belongs to the
    /// connection).
    pub events_withheld: IntCounter,
    /// Webhook callback requests, by outcome (`ok`, `error`).
    pub webhook_requests: IntCounterVec,
    /// Events acknowledged by webhook callbacks (2xx).
    pub webhook_events: IntCounter,
    /// Webhook retries scheduled after a failed request.
    pub webhook_retries: IntCounter,
    /// Webhook subscriptions that expired with events still undelivered, and how many.
    pub webhook_giveups: IntCounter,
    /// Events queued for webhook callbacks, not yet acknowledged.
    pub webhook_pending: IntGauge,
    /// Calls running now.
    pub calls_active: IntGauge,
    /// Calls started, by direction.
    pub calls_started: IntCounterVec,
    /// Calls ended, by final status.
    pub calls_ended: IntCounterVec,
    /// Call and SMS errors and warnings, by Twilio code.
    pub call_errors: IntCounterVec,
    /// TwiML verbs run, by verb.
    pub verbs: IntCounterVec,
    /// Time applications take to answer a TwiML request.
    pub app_latency: Histogram,
    /// Requests on a tenant's behalf refused by the egress rules, by reason.
    pub egress_refused: IntCounterVec,
    /// Requests refused over a `[limits]` quota or rate, by the config key.
    pub quota_refusals: IntCounterVec,
    /// Control-channel requests refused for their signed `method=`, by reason
    /// (`method_not_signed`: missing or another method; `method_invalid`: malformed).
    pub control_refused: IntCounterVec,
    /// Control-channel creates, by outcome (`created`; `existing`: equal to a
    /// subscription the client had, so nothing was added — a replayed signed URL).
    pub control_creates: IntCounterVec,
    /// WebSockets the server closed for what the client sent, by reason
    /// (`crate::http::stream::reassembly::CLOSE_REASONS`).
    pub ws_closed: IntCounterVec,
    /// Call events the event router still refused after every retry.
    pub call_events_refused: IntCounter,
    /// Call queues of every account.
    pub queues: IntGauge,
    /// Callers waiting in queues.
    pub queue_members: IntGauge,
    /// How long callers waited in a queue (simulated seconds), by how they left.
    pub queue_waits: HistogramVec,
}

impl Metrics {
    /// Creates and registers every metric, plus the process collector.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("one process collector");
        let reg = Registrar(&registry);

        let metrics = Metrics {
            published: reg.counter_vec(
                "switchboard_events_published_total",
                "Events accepted for publication, by type family",
                &["family"],
            ),
            delivered: reg.counter_vec(
                "switchboard_events_delivered_total",
                "Events written to client connections, by transport",
                &["transport"],
            ),
            delivery_writes: reg.counter_vec(
                "switchboard_delivery_writes_total",
                "Writes of events to client connections, by transport",
                &["transport"],
            ),
            publish_rejected: reg.counter_vec(
                "switchboard_publish_rejected_total",
                "Publish requests refused, by reason",
                &["reason"],
            ),
            auth_failures: reg.counter_vec(
                "switchboard_auth_failures_total",
                "Authentication failures, by reason",
                &["reason"],
            ),
            publish_latency: reg.add(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_publish_latency_seconds",
                    "Publish request handling time, from body read to 202",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            delivery_latency: reg.add(HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_delivery_latency_seconds",
                    "Time from publish accepted to the event written to a client connection",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["transport"],
            )),
            connections: reg.gauge_vec(
                "switchboard_connections",
                "Open streaming connections, by transport",
                &["transport"],
            ),
            http_connections: reg.counter_vec(
                "switchboard_http_connections_total",
                "Accepted HTTP connections, by where their first request was served \
                 (lane: the front door's lane for streams and publishes; dispatcher: actix-http)",
                &["path"],
            ),
            subscriptions: reg.gauge_vec(
                "switchboard_subscriptions",
                "Client subscriptions held by proxies, by transport (stream or webhook)",
                &["transport"],
            ),
            aggregated_subscriptions: reg.gauge(
                "switchboard_aggregated_subscriptions",
                "Upstream subscriptions held by broker shards (after aggregation)",
            ),
            proxy_filters: reg.gauge(
                "switchboard_proxy_filters",
                "Distinct filters held by event proxies (subscriptions sharing one are matched once)",
            ),
            filter_evaluations: reg.counter_vec(
                "switchboard_filter_evaluations_total",
                "Filters checked against an event, by actor (shard or proxy)",
                &["actor"],
            ),
            sessions: reg.gauge("switchboard_sessions", "Client sessions alive"),
            proxy_sessions: reg.gauge_vec(
                "switchboard_proxy_sessions",
                "Client sessions held by each event proxy",
                &["index"],
            ),
            shard_slots: reg.gauge_vec(
                "switchboard_shard_slots",
                "Virtual call slots (of 1024) owned by each broker shard",
                &["index"],
            ),
            shard_busy: reg.float_counter_vec(
                "switchboard_shard_busy_seconds_total",
                "Seconds each broker shard spent routing publish batches",
                &["index"],
            ),
            shard_events: reg.counter_vec(
                "switchboard_shard_events_total",
                "Events each broker shard routed",
                &["index"],
            ),
            shard_panics: reg.counter(
                "switchboard_shard_panics_total",
                "Publish batches a broker shard dropped because routing them panicked",
            ),
            actor_restarts: reg.counter_vec(
                "switchboard_actor_restarts_total",
                "Actors restarted in place (same state and mailbox), by actor and cause",
                &["actor", "cause"],
            ),
            shard_changes: reg.counter_vec(
                "switchboard_shard_changes_total",
                "Broker shards the shard supervisor added and retired, by change",
                &["change"],
            ),
            proxy_changes: reg.counter_vec(
                "switchboard_proxy_changes_total",
                "Event proxies the proxy supervisor added and retired, by change",
                &["change"],
            ),
            sessions_moved: reg.counter(
                "switchboard_sessions_moved_total",
                "Client sessions moved from one event proxy to another (merging and retiring proxies)",
            ),
            cached_events: reg.gauge(
                "switchboard_cached_events",
                "Events retained in client outboxes for replay and absent clients",
            ),
            events_dropped: reg.counter(
                "switchboard_events_dropped_total",
                "Events evicted from a client outbox by retention before being written",
            ),
            gaps: reg.counter(
                "switchboard_stream_gaps_total",
                "stream.gap notices written",
            ),
            shards: reg.gauge("switchboard_shards", "Broker shards running"),
            proxies: reg.gauge("switchboard_proxies", "Event proxies running"),
            mailbox_depth: reg.gauge_vec(
                "switchboard_mailbox_depth",
                "Work queued at an actor: publish batches for shards, delivery batches for proxies",
                &["actor", "index"],
            ),
            shard_retained: reg.gauge(
                "switchboard_shard_retained_events",
                "Events retained by broker shards for cursor=earliest replays",
            ),
            replays: reg.counter_vec(
                "switchboard_replays_total",
                "Streams resumed from a cursor or from the earliest retained event, by kind (cursor, earliest; history read back: stream in cluster mode, store with data_dir)",
                &["kind"],
            ),
            replayed_events: reg.counter(
                "switchboard_replayed_events_total",
                "Events delivered from retention by cursor=earliest replays",
            ),
            replays_in_progress: reg.gauge(
                "switchboard_replays_in_progress",
                "cursor=earliest replays holding one of the stream.replays_at_once turns",
            ),
            backbone_connected: reg.gauge(
                "switchboard_backbone_connected",
                "Cluster mode: 1 while connected to NATS, 0 while not (0 when standalone)",
            ),
            store_bytes: reg.gauge(
                "switchboard_store_bytes",
                "With data_dir: the size of the store's file on disk (0 without)",
            ),
            store_commits: reg.counter_vec(
                "switchboard_store_commits_total",
                "With data_dir: the store's commits, by outcome",
                &["outcome"],
            ),
            store_events: reg.gauge(
                "switchboard_store_events",
                "With data_dir: events the event log keeps on disk",
            ),
            store_group_size: reg.add(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_store_group_size",
                    "With data_dir: publish requests kept by one group commit (one fsync)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]),
            )),
            store_pruned: reg.counter(
                "switchboard_store_pruned_total",
                "With data_dir: messages retention dropped from the event log",
            ),
            store_history_events: reg.counter(
                "switchboard_store_history_events_total",
                "With data_dir: events read back from the event log for resuming clients",
            ),
            backbone_publish_ack: reg.add(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_backbone_publish_ack_seconds",
                    "Cluster mode: a publish's wait for JetStream's acknowledgement",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            backbone_publish_failures: reg.counter_vec(
                "switchboard_backbone_publish_failures_total",
                "Cluster mode: publishes the backbone did not take, by reason",
                &["reason"],
            ),
            backbone_consumed: reg.counter(
                "switchboard_backbone_consumed_total",
                "Cluster mode: messages this node's consumer read from the stream",
            ),
            backbone_lag: reg.gauge(
                "switchboard_backbone_consumer_lag",
                "Cluster mode: messages in the stream this node's consumer has not read yet",
            ),
            backbone_rejected: reg.counter_vec(
                "switchboard_backbone_rejected_total",
                "Cluster mode: messages on the stream this node could not take, by reason",
                &["reason"],
            ),
            backbone_redelivered: reg.counter(
                "switchboard_backbone_redelivered_total",
                "Cluster mode: messages the stream sent this node's consumer again, skipped",
            ),
            backbone_history_events: reg.counter(
                "switchboard_backbone_history_events_total",
                "Cluster mode: events read back from the stream for clients resuming on this node",
            ),
            backbone_consumers: reg.gauge(
                "switchboard_backbone_consumers",
                "Cluster mode: accounts this node reads from the stream, one consumer each",
            ),
            backbone_shared_writes: reg.counter_vec(
                "switchboard_backbone_shared_client_writes_total",
                "Cluster mode: writes of a client's shared subscriptions, by outcome",
                &["outcome"],
            ),
            client_events: reg.counter_vec(
                "switchboard_client_events_total",
                "Client events accepted, by how they came (http, ws)",
                &["via"],
            ),
            client_events_refused: reg.counter_vec(
                "switchboard_client_events_refused_total",
                "Client events refused before publishing, by how they came (http, ws) and why",
                &["via", "reason"],
            ),
            signed_urls: reg.counter_vec(
                "switchboard_signed_urls_total",
                "URLs signed by the SignedUrls endpoint, by the surface they open",
                &["surface"],
            ),
            events_withheld: reg.counter(
                "switchboard_events_withheld_total",
                "Scoped events not written to a connection whose own grant lacks their scope",
            ),
            webhook_requests: reg.counter_vec(
                "switchboard_webhook_requests_total",
                "Webhook callback requests, by outcome (ok: 2xx; error: anything else)",
                &["outcome"],
            ),
            webhook_events: reg.counter(
                "switchboard_webhook_events_total",
                "Events acknowledged by webhook callbacks",
            ),
            webhook_retries: reg.counter(
                "switchboard_webhook_retries_total",
                "Webhook retries scheduled after a failed request",
            ),
            webhook_giveups: reg.counter(
                "switchboard_webhook_giveups_total",
                "Events never acknowledged because their webhook subscription ended first",
            ),
            webhook_pending: reg.gauge(
                "switchboard_webhook_pending_events",
                "Events queued for webhook callbacks and not yet acknowledged",
            ),
            calls_active: reg.gauge("switchboard_calls_active", "Calls running now"),
            queues: reg.gauge("switchboard_queues", "Call queues of every account"),
            queue_members: reg.gauge(
                "switchboard_queue_members",
                "Callers waiting in call queues (Enqueue), over every queue",
            ),
            queue_waits: reg.add(HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_queue_wait_seconds",
                    "Simulated seconds callers waited in a queue, by how they left (QueueResult)",
                )
                .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
                &["result"],
            )),
            calls_started: reg.counter_vec(
                "switchboard_calls_started_total",
                "Calls started, by direction",
                &["direction"],
            ),
            calls_ended: reg.counter_vec(
                "switchboard_calls_ended_total",
                "Calls ended, by final status",
                &["status"],
            ),
            call_errors: reg.counter_vec(
                "switchboard_call_errors_total",
                "Call and SMS errors and warnings, by Twilio error code",
                &["code"],
            ),
            verbs: reg.counter_vec(
                "switchboard_twiml_verbs_total",
                "TwiML verbs run, by verb",
                &["verb"],
            ),
            app_latency: reg.add(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_app_request_seconds",
                    "Time applications take to answer a TwiML request",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )),
            egress_refused: reg.counter_vec(
                "switchboard_egress_refused_total",
                "URLs and requests refused by the egress rules (docs/api.md §5), by reason",
                &["reason"],
            ),
            quota_refusals: reg.counter_vec(
                "switchboard_quota_refusals_total",
                "Requests refused over a [limits] quota or rate, by config key",
                &["key"],
            ),
            control_refused: reg.counter_vec(
                "switchboard_control_refused_total",
                "Control-channel requests refused for their signed method, by reason",
                &["reason"],
            ),
            control_creates: reg.counter_vec(
                "switchboard_control_creates_total",
                "Control-channel creates, by outcome (created, or existing for an equal subscription)",
                &["outcome"],
            ),
            ws_closed: reg.counter_vec(
                "switchboard_ws_closed_total",
                "WebSockets closed by the server for what the client sent, by reason",
                &["reason"],
            ),
            call_events_refused: reg.counter(
                "switchboard_call_events_refused_total",
                "Call events the event router still refused after every retry (not published)",
            ),
            registry,
        };
        metrics.initialise_series();
        metrics
    }

    /// Creates every label combination known up front at zero, so dashboards and
    /// `rate()` see a series from the first scrape instead of a gap until first use.
    fn initialise_series(&self) {
        for family in FAMILIES.iter().chain(&["other"]) {
            self.published.with_label_values(&[family]);
        }
        for transport in TRANSPORTS {
            self.delivered.with_label_values(&[transport]);
            self.delivery_writes.with_label_values(&[transport]);
            self.delivery_latency.with_label_values(&[transport]);
        }
        for transport in STREAM_TRANSPORTS {
            self.connections.with_label_values(&[transport]);
        }
        for path in CONNECTION_PATHS {
            self.http_connections.with_label_values(&[path]);
        }
        for reason in REJECT_REASONS {
            self.publish_rejected.with_label_values(&[reason]);
        }
        for reason in crate::auth::AuthError::REASONS {
            self.auth_failures.with_label_values(&[reason]);
        }
        for kind in SUBSCRIPTION_TRANSPORTS {
            self.subscriptions.with_label_values(&[kind]);
        }
        for kind in ["cursor", "earliest", "stream", "store"] {
            self.replays.with_label_values(&[kind]);
        }
        for change in ["added", "retired"] {
            self.shard_changes.with_label_values(&[change]);
            self.proxy_changes.with_label_values(&[change]);
        }
        for actor in ["shard", "proxy"] {
            self.filter_evaluations.with_label_values(&[actor]);
        }
        for actor in RESTARTED_ACTORS {
            for cause in ["panic", "stop"] {
                self.actor_restarts.with_label_values(&[actor, cause]);
            }
        }
        for via in ["http", "ws"] {
            self.client_events.with_label_values(&[via]);
        }
        for via in ["http", "ws"] {
            let reasons = crate::grant::Refusal::REASONS
                .iter()
                .chain(&crate::callrouter::steer::SteerError::REASONS);
            for reason in reasons {
                self.client_events_refused.with_label_values(&[via, reason]);
            }
        }
        for surface in crate::http::signed_urls::Surface::ALL {
            self.signed_urls.with_label_values(&[surface.label()]);
        }
        for outcome in ["ok", "error"] {
            self.webhook_requests.with_label_values(&[outcome]);
        }
        for reason in ["unavailable", "not_acknowledged", "too_large"] {
            self.backbone_publish_failures.with_label_values(&[reason]);
        }
        for outcome in ["ok", "failed"] {
            self.backbone_shared_writes.with_label_values(&[outcome]);
            self.store_commits.with_label_values(&[outcome]);
        }
        for reason in [
            "subject",
            "unknown_account",
            "decode",
            "check",
            "info",
            "client_entry",
        ] {
            self.backbone_rejected.with_label_values(&[reason]);
        }
        for direction in ["inbound", "outbound-api", "outbound-dial"] {
            self.calls_started.with_label_values(&[direction]);
        }
        for status in ["completed", "busy", "no-answer", "failed", "canceled"] {
            self.calls_ended.with_label_values(&[status]);
        }
        for code in ["11200", "11750", "12100", "12200"] {
            self.call_errors.with_label_values(&[code]);
        }
        // The call router's bounds: a document loop in a call, an SMS reply loop.
        for code in ["14106", "14107"] {
            self.call_errors.with_label_values(&[code]);
        }
        for verb in VERBS {
            self.verbs.with_label_values(&[verb]);
        }
        for result in QUEUE_RESULTS {
            self.queue_waits.with_label_values(&[result]);
        }
        for reason in crate::egress::REFUSAL_REASONS {
            self.egress_refused.with_label_values(&[reason]);
        }
        for limit in crate::limits::Limit::ALL {
            self.quota_refusals.with_label_values(&[limit.key()]);
        }
        for reason in CONTROL_REFUSALS {
            self.control_refused.with_label_values(&[reason]);
        }
        for outcome in ["created", "existing"] {
            self.control_creates.with_label_values(&[outcome]);
        }
        for reason in crate::http::stream::reassembly::CLOSE_REASONS {
            self.ws_closed.with_label_values(&[reason]);
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The bounded label for an event type: its first segment if it is a known family.
pub fn family(type_name: &str) -> &'static str {
    let first = type_name.split('.').next().unwrap_or("");
    FAMILIES
        .iter()
        .find(|f| **f == first)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_bounded() {
        assert_eq!(family("call.start"), "call");
        assert_eq!(family("gather"), "gather");
        assert_eq!(family("acme.thing"), "other");
    }

    #[test]
    fn renders_registered_metrics() {
        let metrics = Metrics::new();
        metrics.published.with_label_values(&["call"]).inc();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("switchboard_events_published_total{family=\"call\"} 1"));
    }
}
