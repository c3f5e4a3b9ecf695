//! Per-tenant quotas and rate limits (docs/api.md §8, `[limits]`): what one account or
//! client may hold (sessions, subscriptions, webhooks, running calls, filter terms)
//! and send (published events, client events), so no tenant can exhaust what the
//! others share. Counts are taken atomically where they are checked, so concurrent
//! requests cannot both take the last slot; a refusal changes nothing.

pub mod bucket;
pub mod counts;
pub mod fair_share;
pub mod rates;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::account::AccountIdx;
use crate::config::LimitsConfig;
use crate::filter::Filter;
use crate::metrics::Metrics;
use counts::AccountCounts;
use rates::KeyedRate;

/// A limit that can refuse a request; its name is the config key it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.sessions_per_account`.
    Sessions,
    /// `limits.subscriptions_per_client`.
    Subscriptions,
    /// `limits.webhooks_per_account`.
    Webhooks,
    /// `limits.calls_per_account`.
    Calls,
    /// `limits.filter_terms`.
    FilterTerms,
    /// `limits.publish_per_sec`.
    PublishRate,
    /// `limits.client_events_per_sec`.
    ClientEventRate,
    /// An account's fair share of a broker shard's `publish.shard_queue`.
    ShardShare,
}

impl Limit {
    /// Every limit, for pre-creating metric series.
    pub const ALL: [Limit; 8] = [
        Limit::Sessions,
        Limit::Subscriptions,
        Limit::Webhooks,
        Limit::Calls,
        Limit::FilterTerms,
        Limit::PublishRate,
        Limit::ClientEventRate,
        Limit::ShardShare,
    ];

    /// The config key, named in refusals and used as the metric label.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Sessions => "limits.sessions_per_account",
            Limit::Subscriptions => "limits.subscriptions_per_client",
            Limit::Webhooks => "limits.webhooks_per_account",
            Limit::Calls => "limits.calls_per_account",
            Limit::FilterTerms => "limits.filter_terms",
            Limit::PublishRate => "limits.publish_per_sec",
            Limit::ClientEventRate => "limits.client_events_per_sec",
            Limit::ShardShare => "publish.shard_queue",
        }
    }
}

/// A refusal: 429 `quota_exceeded` for counts, 429 `rate_limited` for rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Taking one more would pass a count quota.
    #[error("{}: at most {limit} {what}", .key.key())]
    Exceeded {
        /// The quota.
        key: Limit,
        /// Its configured value.
        limit: usize,
        /// What is counted, for the message.
        what: &'static str,
    },
    /// A rate is over its limit; `retry_after` seconds would let the request pass.
    #[error("{}: at most {per_sec} per second; retry after {retry_after} s", .key.key())]
    RateLimited {
        /// The rate.
        key: Limit,
        /// Its configured value.
        per_sec: u32,
        /// Whole seconds to wait (at least 1).
        retry_after: u32,
    },
}

/// Counts a refusal in `switchboard_quota_refusals_total{key}` and logs it (the
/// account's index only: no request content).
pub fn record_refusal(metrics: &Metrics, account: AccountIdx, key: Limit) {
    metrics.quota_refusals.with_label_values(&[key.key()]).inc();
    tracing::info!(key = key.key(), account = account.0, "refused over a limit");
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
fn retry_secs(wait: Duration) -> u32 {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

/// The limits and what each account and client holds against them. Shared by `Arc`.
pub struct Quotas {
    config: LimitsConfig,
    metrics: Metrics,
    sessions: AccountCounts,
    webhooks: AccountCounts,
    calls: AccountCounts,
    publish: KeyedRate<AccountIdx>,
    client_events: KeyedRate<(AccountIdx, Arc<str>)>,
}

impl Quotas {
    /// Nothing held yet, for `accounts` accounts.
    pub fn new(config: &LimitsConfig, accounts: usize, metrics: Metrics) -> Quotas {
        Quotas {
            config: config.clone(),
            metrics,
            sessions: AccountCounts::new(accounts),
            webhooks: AccountCounts::new(accounts),
            calls: AccountCounts::new(accounts),
            publish: KeyedRate::new(
                config.publish_per_sec,
                config.publish_burst,
                rates::MAX_KEYS,
            ),
            client_events: KeyedRate::new(
                config.client_events_per_sec,
                config.client_events_burst,
                rates::MAX_KEYS,
            ),
        }
    }

    /// Counts and logs a refusal, and hands it back.
    pub fn refused(&self, account: AccountIdx, error: QuotaError) -> QuotaError {
        let key = match error {
            QuotaError::Exceeded { key, .. } | QuotaError::RateLimited { key, .. } => key,
        };
        record_refusal(&self.metrics, account, key);
        error
    }

    fn acquire(
        &self,
        counts: &AccountCounts,
        account: AccountIdx,
        key: Limit,
        limit: usize,
        what: &'static str,
    ) -> Result<(), QuotaError> {
        if counts.acquire(account, limit) {
            return Ok(());
        }
        Err(self.refused(account, QuotaError::Exceeded { key, limit, what }))
    }

    /// Takes a session slot of the account; give it back with [`Quotas::release_session`].
    pub fn acquire_session(&self, account: AccountIdx) -> Result<(), QuotaError> {
        let limit = self.config.sessions_per_account;
        self.acquire(
            &self.sessions,
            account,
            Limit::Sessions,
            limit,
            "client sessions per account",
        )
    }

    /// Gives a session slot back.
    pub fn release_session(&self, account: AccountIdx) {
        self.sessions.release(account);
    }

    /// Sessions of the account held now (cluster mode reads its messages while
    /// there are any).
    pub fn sessions_held(&self, account: AccountIdx) -> usize {
        self.sessions.held(account)
    }

    /// Takes a webhook slot of the account; give it back with [`Quotas::release_webhook`].
    pub fn acquire_webhook(&self, account: AccountIdx) -> Result<(), QuotaError> {
        let limit = self.config.webhooks_per_account;
        self.acquire(
            &self.webhooks,
            account,
            Limit::Webhooks,
            limit,
            "webhook subscriptions per account",
        )
    }

    /// Gives a webhook slot back.
    pub fn release_webhook(&self, account: AccountIdx) {
        self.webhooks.release(account);
    }

    /// Takes a running-call slot of the account; give it back with [`Quotas::release_call`].
    pub fn acquire_call(&self, account: AccountIdx) -> Result<(), QuotaError> {
        let limit = self.config.calls_per_account;
        self.acquire(
            &self.calls,
            account,
            Limit::Calls,
            limit,
            "concurrent calls per account",
        )
    }

    /// Gives a running-call slot back.
    pub fn release_call(&self, account: AccountIdx) {
        self.calls.release(account);
    }

    /// Whether a client holding `held` subscriptions may add one more. Checked by the
    /// proxy that owns the client's subscriptions, inside its handler.
    pub fn check_subscriptions(&self, account: AccountIdx, held: usize) -> Result<(), QuotaError> {
        let limit = self.config.subscriptions_per_client;
        if held < limit {
            return Ok(());
        }
        Err(self.refused(
            account,
            QuotaError::Exceeded {
                key: Limit::Subscriptions,
                limit,
                what: "subscriptions per client",
            },
        ))
    }

    /// Whether a filter has at most `limits.filter_terms` terms (`types` entries
    /// plus `where` clauses): every event of the account is matched against them.
    pub fn check_filter(&self, account: AccountIdx, filter: &Filter) -> Result<(), QuotaError> {
        let limit = self.config.filter_terms;
        if filter.type_patterns().len() + filter.wheres().len() <= limit {
            return Ok(());
        }
        Err(self.refused(
            account,
            QuotaError::Exceeded {
                key: Limit::FilterTerms,
                limit,
                what: "terms per filter (types entries plus where clauses)",
            },
        ))
    }

    /// Takes `events` from the account's publish rate.
    pub fn publish(
        &self,
        account: AccountIdx,
        events: usize,
        now: Instant,
    ) -> Result<(), QuotaError> {
        let n = u32::try_from(events).unwrap_or(u32::MAX);
        self.publish.take(account, n, now).map_err(|wait| {
            self.refused(
                account,
                QuotaError::RateLimited {
                    key: Limit::PublishRate,
                    per_sec: self.config.publish_per_sec,
                    retry_after: retry_secs(wait),
                },
            )
        })
    }

    /// Takes one client event from the client's rate.
    pub fn client_event(
        &self,
        account: AccountIdx,
        client: &str,
        now: Instant,
    ) -> Result<(), QuotaError> {
        self.client_events
            .take((account, Arc::from(client)), 1, now)
            .map_err(|wait| {
                self.refused(
                    account,
                    QuotaError::RateLimited {
                        key: Limit::ClientEventRate,
                        per_sec: self.config.client_events_per_sec,
                        retry_after: retry_secs(wait),
                    },
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(tweak: impl FnOnce(&mut LimitsConfig)) -> Quotas {
        let mut config = LimitsConfig::default();
        tweak(&mut config);
        Quotas::new(&config, 2, Metrics::new())
    }

    #[test]
    fn refusals_name_their_key_and_are_counted() {
        let quotas = quotas(|c| c.sessions_per_account = 1);
        let a = AccountIdx(0);
        quotas.acquire_session(a).unwrap();
        let error = quotas.acquire_session(a).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("limits.sessions_per_account: at most 1"),
            "{error}"
        );
        assert_eq!(
            quotas
                .metrics
                .quota_refusals
                .with_label_values(&["limits.sessions_per_account"])
                .get(),
            1
        );
        quotas.release_session(a);
        quotas.acquire_session(a).unwrap();
    }

    #[test]
    fn rates_say_when_to_retry() {
        let quotas = quotas(|c| {
            c.client_events_per_sec = 1;
            c.client_events_burst = 2;
        });
        let (a, now) = (AccountIdx(0), Instant::now());
        quotas.client_event(a, "alice", now).unwrap();
        quotas.client_event(a, "alice", now).unwrap();
        let error = quotas.client_event(a, "alice", now).unwrap_err();
        assert!(
            matches!(error, QuotaError::RateLimited { retry_after: 1, .. }),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .starts_with("limits.client_events_per_sec:"));
        quotas.client_event(a, "bob", now).unwrap();
        quotas.client_event(AccountIdx(1), "alice", now).unwrap();
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_secs(Duration::MAX), u32::MAX);
    }
}
