//! The account registry: who may publish and subscribe, and the small integer index
//! that the hot path uses instead of the 34-character sid.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::AccountConfig;

/// Dense index of an account, assigned at start-up in config order. Cheap to copy into
/// every event and subscription key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountIdx(pub u32);

/// One account's credentials. `Debug` shows the sid only: the rest is secret.
pub struct Account {
    /// `AC` + 32 lowercase hex digits.
    pub sid: Box<str>,
    /// Secret used for Basic auth and signed URLs.
    pub auth_token: Box<str>,
    /// `Basic base64(sid:auth_token)`, the `Authorization` value a client sends, built
    /// once: comparing a request's header with it is the usual check (see
    /// [`crate::auth::basic`]), where decoding the header was a tenth of a one-event
    /// publish. Secret like the token.
    pub basic_header: Box<[u8]>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// The canonical `Authorization` value of these credentials.
fn basic_header(sid: &str, token: &str) -> Box<[u8]> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    format!("Basic {encoded}").into_bytes().into()
}

/// All accounts, immutable after start-up and shared by `Arc`.
#[derive(Debug, Default)]
pub struct Accounts {
    by_idx: Vec<Account>,
    /// FxHash, not SipHash, although the sid looked up comes from a request's path:
    /// nothing is ever inserted after start-up, so no request can build the
    /// collisions that hash flooding needs, and every request looks its account up.
    by_sid: FxHashMap<Box<str>, AccountIdx>,
}

impl Accounts {
    /// Builds the registry from the configured accounts (already validated).
    pub fn new(configs: &[AccountConfig]) -> Arc<Accounts> {
        let mut accounts = Accounts::default();
        for config in configs {
            if accounts.by_sid.contains_key(config.sid.as_str()) {
                continue;
            }
            let idx = AccountIdx(accounts.by_idx.len() as u32);
            accounts.by_sid.insert(config.sid.clone().into(), idx);
            accounts.by_idx.push(Account {
                sid: config.sid.clone().into(),
                auth_token: config.auth_token.clone().into(),
                basic_header: basic_header(&config.sid, &config.auth_token),
            });
        }
        Arc::new(accounts)
    }

    /// Looks an account up by sid.
    pub fn lookup(&self, sid: &str) -> Option<AccountIdx> {
        self.by_sid.get(sid).copied()
    }

    /// The account behind an index handed out by [`Accounts::lookup`].
    pub fn get(&self, idx: AccountIdx) -> &Account {
        &self.by_idx[idx.0 as usize]
    }

    /// Every account with its index, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (AccountIdx, &Account)> {
        self.by_idx
            .iter()
            .enumerate()
            .map(|(i, account)| (AccountIdx(i as u32), account))
    }
}

/// True for `AC` followed by exactly 32 lowercase hex digits.
pub fn is_account_sid(sid: &str) -> bool {
    sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Generates a development account: a fresh sid and a 32-hex-digit token.
pub fn generate() -> AccountConfig {
    AccountConfig {
        sid: format!("AC{}", random_hex()),
        auth_token: random_hex(),
    }
}

/// 32 lowercase hex digits from the thread RNG.
pub fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_sid_shape() {
        assert!(is_account_sid(&format!(
            "AC{}",
            "0123456789abcdef".repeat(2)
        )));
        assert!(!is_account_sid(&format!(
            "AC{}",
            "0123456789ABCDEF".repeat(2)
        )));
        assert!(!is_account_sid("AC123"));
        assert!(!is_account_sid(&format!("CA{}", "0".repeat(32))));
        assert!(is_account_sid(&generate().sid));
    }

    #[test]
    fn lookup_roundtrip_and_duplicates_ignored() {
        let a = generate();
        let accounts = Accounts::new(&[a.clone(), a.clone(), generate()]);
        let idx = accounts.lookup(&a.sid).expect("configured");
        assert_eq!(&*accounts.get(idx).auth_token, a.auth_token.as_str());
        assert_eq!(accounts.iter().count(), 2);
        assert!(accounts.lookup("ACnope").is_none());
    }
}
