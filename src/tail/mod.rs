//! `switchboard tail` (docs/api.md §9): a terminal subscriber. It opens one SSE stream
//! with the account's Basic credentials and prints each event on one line, readable
//! ([`line::human`]) or as the delivered JSON (`--json`, for `jq`).
//!
//! It behaves like a browser's `EventSource` that never gives up on a server that
//! is merely away: a dropped connection, a restart or a 503 is retried with backoff
//! and resumed from the last event's id (`Last-Event-ID`), so nothing within
//! retention is lost or printed twice. What cannot get better by waiting (bad
//! credentials, a filter the server refuses) ends it with status 1. Stream notices
//! (`stream.open`, `stream.gap`, …) go to stderr, so stdout holds events only.

pub mod line;

use std::io::Write;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use crate::loadtest::sse::SseReader;

/// First pause before reconnecting; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest `Retry-After` honoured, so a wrong header cannot park the tool.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A stream silent this long (the server sends a heartbeat at least every 15 s)
/// is taken for dead and reopened.
const SILENCE: Duration = Duration::from_secs(45);
/// Largest SSE frame read: an event is at most 64 KiB, a `stream.open` lists at
/// most the client's subscriptions.
const MAX_FRAME: usize = 1024 * 1024;
/// Most of an error body read to explain a refusal.
const MAX_ERROR_BODY: usize = 4096;

/// `switchboard tail`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TailArgs {
    /// The server's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The account sid (AC…).
    #[arg(long, env = "SWITCHBOARD_ACCOUNT")]
    pub account: String,
    /// The account's auth token (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Event types, comma-separated (`call.*,gather.end`); all when absent.
    #[arg(long)]
    pub types: Option<String>,
    /// A filter clause such as `data.from=+14155550100`; repeat to AND several.
    #[arg(long = "where", value_name = "CLAUSE")]
    pub clauses: Vec<String>,
    /// Scopes to narrow to, comma-separated; every scope when absent.
    #[arg(long)]
    pub scopes: Option<String>,
    /// The client id to subscribe as (a fresh `tail-…` one when absent).
    #[arg(long)]
    pub client: Option<String>,
    /// First replay every matching event the server still retains.
    #[arg(long)]
    pub from_start: bool,
    /// Print each event's JSON as delivered, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Why `tail` stopped other than by Ctrl-C.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The server refused the request for a reason retrying cannot fix.
    #[error("the server refused the stream: {status} {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's error message.
        message: String,
    },
    /// The flags do not make a URL.
    #[error("--url: {0}")]
    BadUrl(String),
    /// The runtime or the HTTP client could not start.
    #[error("{0}")]
    Setup(String),
}

/// Runs `tail` until Ctrl-C (or SIGTERM), stdout closing, or a refusal.
pub fn run_cli(args: &TailArgs) -> Result<(), TailError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TailError::Setup(e.to_string()))?;
    runtime.block_on(async {
        tokio::select! {
            result = run(args) => result,
            () = stopped() => Ok(()),
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM. Dropping [`run`] at any await point is a clean
/// stop: everything printed was flushed line by line.
async fn stopped() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: &TailArgs) -> Result<(), TailError> {
    let target = Target::new(args)?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TailError::Setup(e.to_string()))?;
    let mut out = Printer::new(args.json);
    let mut last_id: Option<String> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut request = http
            .get(target.url(args.from_start && last_id.is_none()))
            .basic_auth(&args.account, Some(&args.token))
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            request = request.header("Last-Event-ID", id);
        }
        let pause = match request.send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                match read_stream(response, &mut out, &mut last_id, &mut backoff).await {
                    Ok(why) => eprintln!("# stream ended ({why}); reconnecting"),
                    Err(Closed) => return Ok(()),
                }
                backoff
            }
            Ok(response) => {
                let status = response.status();
                let wait = retry_after(&response);
                let message = error_message(response).await;
                if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                    return Err(TailError::Refused {
                        status: status.as_u16(),
                        message,
                    });
                }
                eprintln!("# {} {message}; retrying", status.as_u16());
                wait.unwrap_or(backoff)
            }
            Err(error) => {
                eprintln!("# cannot reach {}: {error}; retrying", args.url);
                backoff
            }
        };
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// stdout was closed (`tail … | head`): a normal end.
struct Closed;

/// Prints the stream's events until it ends; returns why it ended.
async fn read_stream(
    mut response: reqwest::Response,
    out: &mut Printer,
    last_id: &mut Option<String>,
    backoff: &mut Duration,
) -> Result<String, Closed> {
    let mut reader = SseReader::new(16 * 1024, MAX_FRAME);
    loop {
        let chunk = match tokio::time::timeout(SILENCE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return Ok("closed by the server".to_owned()),
            Ok(Err(error)) => return Ok(error.to_string()),
            Err(_) => return Ok(format!("silent for {} s", SILENCE.as_secs())),
        };
        reader.push(&chunk);
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return Ok(error.to_string()),
            };
            if let Some(id) = frame.id {
                *last_id = Some(String::from_utf8_lossy(id).into_owned());
            }
            if let Some(data) = frame.data {
                out.event(data)?;
                // A stream that delivers is a healthy server: the next drop starts
                // over from the shortest pause.
                *backoff = FIRST_BACKOFF;
            }
        }
        out.flush()?;
    }
}

/// Writes events to stdout (buffered per received chunk) and notices to stderr.
struct Printer {
    json: bool,
    stdout: std::io::BufWriter<std::io::Stdout>,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            stdout: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    fn event(&mut self, data: &[u8]) -> Result<(), Closed> {
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            eprintln!("# skipped a frame that is not JSON ({} bytes)", data.len());
            return Ok(());
        };
        let notice = event
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|ty| ty.starts_with("stream."));
        if notice {
            eprintln!("# {}", line::notice(&event));
            return Ok(());
        }
        let written = if self.json {
            self.stdout
                .write_all(data)
                .and_then(|()| self.stdout.write_all(b"\n"))
        } else {
            writeln!(self.stdout, "{}", line::human(&event))
        };
        written.map_err(|_| Closed)
    }

    fn flush(&mut self) -> Result<(), Closed> {
        self.stdout.flush().map_err(|_| Closed)
    }
}

/// The stream URL of the flags, without and with `cursor=earliest`.
struct Target {
    base: String,
}

impl Target {
    fn new(args: &TailArgs) -> Result<Target, TailError> {
        let root = args.url.trim_end_matches('/');
        if !(root.starts_with("http://") || root.starts_with("https://")) {
            return Err(TailError::BadUrl(format!(
                "`{root}` must start with http:// or https://"
            )));
        }
        let client = args
            .client
            .clone()
            .unwrap_or_else(|| format!("tail-{}", &crate::account::random_hex()[..12]));
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("client", &client);
        if let Some(types) = &args.types {
            query.append_pair("types", types);
        }
        for clause in &args.clauses {
            query.append_pair("where", clause);
        }
        if let Some(scopes) = &args.scopes {
            query.append_pair("scopes", scopes);
        }
        Ok(Target {
            base: format!(
                "{root}/v1/Accounts/{}/Stream?{}",
                form_urlencoded::byte_serialize(args.account.as_bytes()).collect::<String>(),
                query.finish()
            ),
        })
    }

    fn url(&self, earliest: bool) -> String {
        if earliest {
            format!("{}&cursor=earliest", self.base)
        } else {
            self.base.clone()
        }
    }
}

/// A `Retry-After` in seconds, bounded.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The `message` of a JSON error body, read up to [`MAX_ERROR_BODY`] bytes.
async fn error_message(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            let code = v.get("code")?.as_str()?.to_owned();
            let message = v.get("message")?.as_str()?.to_owned();
            Some(format!("{code}: {message}"))
        })
        .unwrap_or_else(|| "(no error body)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    fn args(flags: &[&str]) -> TailArgs {
        let mut argv = vec!["tail", "--account", "AC1", "--token", "t"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).expect("flags").tail
    }

    #[test]
    fn flags_become_an_encoded_stream_query() {
        let target = Target::new(&args(&[
            "--url",
            "http://127.0.0.1:9/",
            "--client",
            "me",
            "--types",
            "call.*,gather.end",
            "--where",
            "data.from=+1415",
            "--where",
            "data.duration>60",
            "--scopes",
            "supervisor",
        ]))
        .unwrap();
        assert_eq!(
            target.url(false),
            "http://127.0.0.1:9/v1/Accounts/AC1/Stream?client=me&types=call.*%2Cgather.end\
             &where=data.from%3D%2B1415&where=data.duration%3E60&scopes=supervisor"
        );
        assert!(target.url(true).ends_with("&cursor=earliest"));
    }

    #[test]
    fn a_fresh_client_id_is_made_when_none_is_given() {
        let one = Target::new(&args(&[])).unwrap().url(false);
        let two = Target::new(&args(&[])).unwrap().url(false);
        assert!(one.contains("?client=tail-"), "{one}");
        assert_ne!(one, two);
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        let error = Target::new(&args(&["--url", "127.0.0.1:8080"])).err();
        assert!(matches!(error, Some(TailError::BadUrl(_))), "{error:?}");
    }
}
