//! The `switchboard` command: `serve` runs the server, `sign` prints a signed stream
//! URL, `tail` prints a live stream, `loadtest` drives a running server. Everything
//! else lives in the library.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: it never writes into free memory (glibc puts a
/// chunk header in front of every block), so the untouched parts of each connection's
/// buffers stay out of RSS, and it does not grow and trim a thread arena with
/// `mprotect` on the publish path.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use switchboard::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Real-time telephony event router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults when no config file is given).
    Serve(ServeArgs),
    /// Print a signed path and query for a stream, control-channel or client-event URL.
    ///
    /// A control-channel URL (`…/Clients/{client}/Subscriptions…`) serves only the
    /// method named in its query: put `method=GET`, `POST`, `PATCH` or `DELETE` in it.
    Sign {
        /// The account sid (AC…).
        #[arg(long)]
        account: String,
        /// The account's auth token.
        #[arg(long)]
        token: String,
        /// Seconds until the URL expires, used when the query has no `expires`.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// Path and query to sign, e.g. '/v1/Accounts/AC…/Stream?types=call.*'.
        path: String,
    },
    /// Load-test a running server: publish, fanout, idle, calls or soak.
    ///
    /// Prints a table (or one JSON object with --json) on stdout and a progress line
    /// on stderr. Meant to be pinned to one core (`taskset -c 1 switchboard loadtest
    /// …`). A big run needs the server's [limits] raised: see each scenario's --help
    /// and docs/loadtest.md.
    Loadtest(switchboard::loadtest::LoadtestArgs),
    /// Print a live stream of events, one line each, until Ctrl-C.
    ///
    /// Human-readable by default, the delivered JSON with --json. Reconnects by
    /// itself and resumes where it stopped; stream notices go to stderr. Exits 1 when
    /// the server refuses the credentials or the filters.
    Tail(switchboard::tail::TailArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Loadtest(args) => match switchboard::loadtest::run_cli(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error @ switchboard::loadtest::LoadError::Options(_)) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(1)
            }
        },
        Command::Tail(args) => match switchboard::tail::run_cli(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error @ switchboard::tail::TailError::BadUrl(_)) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(1)
            }
        },
        Command::Sign {
            account,
            token,
            expires_in,
            path,
        } => {
            if !path.starts_with(&format!("/v1/Accounts/{account}/")) {
                eprintln!("error: the path must start with /v1/Accounts/{account}/");
                return ExitCode::from(2);
            }
            let now = switchboard::clock::unix_now();
            println!(
                "{}",
                switchboard::auth::sign_url(&token, &path, expires_in, now)
            );
            ExitCode::SUCCESS
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(cause = %error, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let development_account = config.accounts.is_empty();
    config.egress.resolve(development_account);
    if development_account {
        let account = switchboard::account::generate();
        println!("account_sid: {}", account.sid);
        println!("auth_token: {}", account.auth_token);
        config.accounts.push(account);
    }
    let listener = match TcpListener::bind(config.listen) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(cause = %error, listen = %config.listen, "cannot listen");
            return ExitCode::from(1);
        }
    };
    tracing::info!(listen = %config.listen, "switchboard listening");
    let result =
        actix_rt::System::new().block_on(switchboard::serve(config, listener, terminated()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(cause = %error, "server failed");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
