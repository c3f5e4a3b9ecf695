//! `switchboard loadtest SCENARIO`: a load generator built into the binary, so the
//! numbers in docs/loadtest.md can be reproduced on any box that runs the server, and
//! so the same tool can be pointed at nginx + nchan for comparison.
//!
//! The options are parsed here and each scenario lives in its own file. Everything
//! runs on the caller's tokio runtime (the binary uses a current-thread one, meant to
//! be pinned to one core with `taskset`); every loop is bounded by a count and by
//! `--duration`.

pub mod calls;
pub mod fanout;
pub mod histogram;
pub mod http1;
pub mod idle;
pub mod ivr;
pub mod procstat;
pub mod publish;
pub mod publisher;
pub mod report;
pub mod seqtrack;
pub mod soak;
pub mod sse;
pub mod storm;
pub mod subscriber;
pub mod target;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

pub use report::Report;
use target::Server;

/// Why a load test could not run (refusals by the server during a run are counted in
/// the results instead).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options do not make a runnable test.
    #[error("invalid options: {0}")]
    Options(String),
    /// The server could not be reached or set up.
    #[error("{0}")]
    Setup(String),
    /// The tokio runtime could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// `/proc` could not be read for `--server-pid`.
    #[error("--server-pid: {0}")]
    Proc(#[from] procstat::ProcError),
}

/// `switchboard loadtest …`.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest")]
pub struct LoadtestArgs {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Which server protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Switchboard: Basic-auth publishes, signed-URL SSE streams.
    Switchboard,
    /// nginx + nchan: `POST /pub?id=load`, `GET /sub?id=load` as SSE.
    Nchan,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::Nchan => "nchan",
        }
    }
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Which server protocol to speak.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    pub target: Target,
    /// Account sid (switchboard target).
    #[arg(long, env = "SWITCHBOARD_ACCOUNT")]
    pub account: Option<String>,
    /// Auth token (switchboard target).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's process id: report its CPU seconds over the measured phase and its
    /// resident memory, read from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Upper bound on the measured phase, in seconds (default 30; soak: 60).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// Publish as fast as possible over keep-alive connections; request rate,
    /// latency and refusals by status.
    ///
    /// Switchboard refuses above `limits.publish_per_sec` (default 10000 events/s,
    /// burst `limits.publish_burst` 20000) and beyond half of `publish.shard_queue`
    /// per shard: raise them in the server's config for a throughput run, or the
    /// results will show 429s.
    Publish(PublishArgs),
    /// S subscribers on one stream each, P publishers; deliveries, loss,
    /// duplicates, order and end-to-end latency.
    ///
    /// Needs `limits.sessions_per_account` ≥ subscribers, and `limits.publish_per_sec`
    /// / `limits.publish_burst` above the publish rate.
    Fanout(FanoutArgs),
    /// N idle SSE connections held open; server memory per connection.
    ///
    /// Needs `limits.sessions_per_account` ≥ connections. Above ~25000 connections the
    /// tool spreads them over 127.0.0.1, 127.0.0.2, … (a loopback URL is needed).
    Idle(IdleArgs),
    /// N simulated calls through an IVR the tool serves itself; set-up latency and
    /// call events per second.
    ///
    /// The server needs `[egress] allow_private_networks = true` (the tool's IVR
    /// listens on 127.0.0.1), a fast `[sim] time_scale` (e.g. 0.01) and
    /// `limits.calls_per_account` ≥ concurrency. Switchboard target only.
    Calls(CallsArgs),
    /// Mixed load for a bounded time: subscribers, paced publishes and a trickle of
    /// calls; one row per interval.
    ///
    /// Same server settings as fanout and calls (calls need
    /// `[egress] allow_private_networks = true` and a fast `[sim] time_scale`).
    Soak(SoakArgs),
    /// Publish latency and refusals while N clients reconnect in a loop asking for
    /// `cursor=earliest` replays, against the same publisher alone: a quiet phase,
    /// then a storm phase.
    ///
    /// Needs `limits.sessions_per_account` ≥ clients (each keeps its session between
    /// its connections). Switchboard target only.
    Storm(StormArgs),
}

/// `loadtest publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Keep-alive connections publishing at once.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Events per request (a JSON array when more than 1; switchboard only).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Requests to send in all.
    #[arg(long, default_value_t = 200_000)]
    pub requests: u64,
}

/// `loadtest fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscribers, each on its own connection.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Messages per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Keep-alive publishing connections.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Servers the subscribers connect to, in turn (repeatable): other nodes of a
    /// cluster than the one `--url` publishes to. Default: `--url`.
    #[arg(long = "subscribe-url")]
    pub subscribe_urls: Vec<String>,
}

/// `loadtest idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// SSE connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
}

/// `loadtest calls`.
#[derive(Debug, Clone, Args)]
pub struct CallsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Calls to make.
    #[arg(long, default_value_t = 1000)]
    pub calls: u64,
    /// Calls in progress at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Digits each caller presses.
    #[arg(long, default_value = "1234")]
    pub digits: String,
}

/// `loadtest soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Seconds per reported row.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Subscribers.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Published messages per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Calls started per second (0 for none; must be 0 with --target nchan).
    #[arg(long, default_value_t = 5)]
    pub calls_per_sec: u64,
}

/// `loadtest storm`.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Clients reconnecting in the storm phase, each with its own fixed client id.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Published events per second, in both phases (one per request).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds per phase (at most half of --duration).
    #[arg(long, default_value_t = 5)]
    pub phase: u64,
}

impl Scenario {
    fn common(&self) -> &Common {
        match self {
            Scenario::Publish(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Idle(a) => &a.common,
            Scenario::Calls(a) => &a.common,
            Scenario::Soak(a) => &a.common,
            Scenario::Storm(a) => &a.common,
        }
    }
}

/// Nanoseconds since the tool's epoch (taken on first use). Publishers stamp events
/// with it and subscribers in the same process subtract it from their own reading.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What every scenario gets: the server, its process, the run's bounds.
pub struct Ctx {
    /// The server and how to speak to it.
    pub server: Server,
    /// `--server-pid`.
    pub server_pid: Option<u32>,
    /// The measured phase's upper bound.
    pub duration: Duration,
    /// A random tag in every event, so a subscriber ignores another run's events.
    pub run: u64,
}

impl Ctx {
    /// The server's CPU and memory now, when `--server-pid` was given.
    pub fn sample(&self) -> Result<Option<procstat::ProcSample>, LoadError> {
        self.server_pid
            .map(procstat::sample)
            .transpose()
            .map_err(LoadError::from)
    }
}

/// Runs the scenario on the current tokio runtime and returns its report.
pub async fn run(args: &LoadtestArgs) -> Result<Report, LoadError> {
    let common = args.scenario.common();
    let default_secs = match args.scenario {
        Scenario::Soak(_) => 60,
        _ => 30,
    };
    let duration = Duration::from_secs(common.duration.unwrap_or(default_secs).max(1));
    let server = Server::new(common).await?;
    now_ns();
    let ctx = Ctx {
        server,
        server_pid: common.server_pid,
        duration,
        run: rand::random::<u64>() >> 12,
    };
    if let Some(pid) = ctx.server_pid {
        procstat::sample(pid)?;
    }
    let base = json!({
        "url": common.url,
        "duration_secs": duration.as_secs(),
        "server_pid": common.server_pid,
    });
    let (name, mut params, results) = match &args.scenario {
        Scenario::Publish(a) => ("publish", publish::params(a), publish::run(&ctx, a).await?),
        Scenario::Fanout(a) => ("fanout", fanout::params(a), fanout::run(&ctx, a).await?),
        Scenario::Idle(a) => ("idle", idle::params(a), idle::run(&ctx, a).await?),
        Scenario::Calls(a) => ("calls", calls::params(a), calls::run(&ctx, a).await?),
        Scenario::Soak(a) => ("soak", soak::params(a), soak::run(&ctx, a).await?),
        Scenario::Storm(a) => ("storm", storm::params(a), storm::run(&ctx, a).await?),
    };
    if let (Value::Object(params), Value::Object(base)) = (&mut params, base) {
        for (k, v) in base {
            params.entry(k).or_insert(v);
        }
    }
    Ok(Report {
        scenario: name.to_owned(),
        target: common.target.name().to_owned(),
        params,
        results,
    })
}

/// The binary's entry point: raises the file-descriptor limit, runs the scenario on a
/// current-thread runtime and prints the report (JSON or table) on stdout.
pub fn run_cli(args: &LoadtestArgs) -> Result<(), LoadError> {
    raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    if args.scenario.common().json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: ten thousand idle connections
/// need more descriptors than the usual soft limit of 1024. Failing leaves it as it
/// was; connections beyond it are then counted as failed.
pub fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// `value` if it is at least `min`, for option checks.
fn at_least(name: &str, value: u64, min: u64) -> Result<(), LoadError> {
    if value < min {
        return Err(LoadError::Options(format!(
            "--{name} must be at least {min}"
        )));
    }
    Ok(())
}

/// Per-second rate, rounded to a whole number, or 0 for an empty interval.
fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (count as f64 / secs).round()
    } else {
        0.0
    }
}
