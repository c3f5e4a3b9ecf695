//! The client directory: which proxy holds each client's session, and where a new
//! one goes (docs/api.md §8, "Scaling inside a node").
//!
//! Clients used to map to proxies by `hash % proxies`, so the proxy count could
//! never change without remapping every client. Now a client's proxy is whatever
//! the directory says, and the directory changes one client at a time: when a
//! proxy makes a session it claims the client, when it drops one it releases it,
//! and when the proxy supervisor moves a session the entry moves with it. A client
//! with no entry goes to the least loaded proxy that accepts new sessions, so new
//! proxies fill up as they are added, and a proxy being retired takes none.
//!
//! The proxy that makes a session is the one that claims it, in the same handler:
//! two first requests for one client routed to two proxies at once cannot both make
//! a session, because the second proxy's claim finds the first's and answers
//! `Elsewhere`, and the request is routed again.
//!
//! Client ids are chosen by tenants, so the map keeps std's keyed hash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::Addr;
use parking_lot::RwLock;
use prometheus::IntGauge;

use super::proxy::{EventProxy, ProxyId};
use crate::account::AccountIdx;

/// One proxy as the directory knows it.
#[derive(Clone)]
pub struct ProxyHandle {
    /// Its id, never reused while the process lives.
    pub id: ProxyId,
    /// The proxy actor.
    pub addr: Addr<EventProxy>,
    /// Its sessions: `switchboard_proxy_sessions{index}`, kept by the proxy.
    pub sessions: IntGauge,
    /// Delivery batches queued for it: `switchboard_mailbox_depth{actor="proxy"}`.
    pub depth: IntGauge,
}

struct Entry {
    handle: ProxyHandle,
    /// False once its retirement began: it gets no new sessions.
    accepting: AtomicBool,
}

/// The directory (see the module docs).
#[derive(Default)]
pub struct Directory {
    proxies: RwLock<Vec<Arc<Entry>>>,
    clients: RwLock<HashMap<(AccountIdx, Arc<str>), ProxyId>>,
}

/// Why a proxy may not make a session for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Another proxy holds the client.
    Elsewhere(ProxyId),
    /// This proxy is being retired and takes no new sessions.
    Retiring,
}

impl Directory {
    /// Adds a proxy, accepting new sessions.
    pub fn add(&self, handle: ProxyHandle) {
        self.proxies.write().push(Arc::new(Entry {
            handle,
            accepting: AtomicBool::new(true),
        }));
    }

    /// Every proxy, in the order they were added.
    pub fn proxies(&self) -> Vec<ProxyHandle> {
        self.proxies
            .read()
            .iter()
            .map(|e| e.handle.clone())
            .collect()
    }

    /// The proxies that accept new sessions.
    pub fn accepting(&self) -> Vec<ProxyHandle> {
        self.proxies
            .read()
            .iter()
            .filter(|e| e.accepting.load(Ordering::Relaxed))
            .map(|e| e.handle.clone())
            .collect()
    }

    /// Proxy `id` takes no new sessions from now on (its retirement begins).
    pub fn stop_accepting(&self, id: ProxyId) {
        if let Some(entry) = self.proxies.read().iter().find(|e| e.handle.id == id) {
            entry.accepting.store(false, Ordering::Relaxed);
        }
    }

    /// Proxy `id` takes new sessions again (a retirement that could not finish).
    pub fn start_accepting(&self, id: ProxyId) {
        if let Some(entry) = self.proxies.read().iter().find(|e| e.handle.id == id) {
            entry.accepting.store(true, Ordering::Relaxed);
        }
    }

    /// Forgets proxy `id` (retired, with no sessions left); returns its handle.
    pub fn remove(&self, id: ProxyId) -> Option<ProxyHandle> {
        let mut proxies = self.proxies.write();
        let at = proxies.iter().position(|e| e.handle.id == id)?;
        Some(proxies.remove(at).handle.clone())
    }

    /// The proxy to ask about this client: the one holding it, else the least
    /// loaded that accepts new sessions (the first of those, on a tie).
    pub fn route(&self, account: AccountIdx, client: &Arc<str>) -> Option<ProxyHandle> {
        let proxies = self.proxies.read();
        if let Some(id) = self.owner(account, client) {
            if let Some(entry) = proxies.iter().find(|e| e.handle.id == id) {
                return Some(entry.handle.clone());
            }
        }
        proxies
            .iter()
            .filter(|e| e.accepting.load(Ordering::Relaxed))
            .min_by_key(|e| e.handle.sessions.get())
            .map(|e| e.handle.clone())
    }

    /// The proxy holding this client's session, if any.
    pub fn owner(&self, account: AccountIdx, client: &Arc<str>) -> Option<ProxyId> {
        self.clients.read().get(&(account, client.clone())).copied()
    }

    /// Proxy `proxy` makes a session for this client: it becomes the client's
    /// proxy, unless another already is or `proxy` is being retired.
    pub fn claim(
        &self,
        account: AccountIdx,
        client: &Arc<str>,
        proxy: ProxyId,
    ) -> Result<(), ClaimError> {
        let accepting = self
            .proxies
            .read()
            .iter()
            .any(|e| e.handle.id == proxy && e.accepting.load(Ordering::Relaxed));
        let mut clients = self.clients.write();
        match clients.get(&(account, client.clone())) {
            Some(&owner) if owner == proxy => Ok(()),
            Some(&owner) => Err(ClaimError::Elsewhere(owner)),
            None if !accepting => Err(ClaimError::Retiring),
            None => {
                clients.insert((account, client.clone()), proxy);
                Ok(())
            }
        }
    }

    /// Proxy `proxy` dropped this client's session: it has none any more (unless
    /// the entry already names another proxy).
    pub fn release(&self, account: AccountIdx, client: &Arc<str>, proxy: ProxyId) {
        let mut clients = self.clients.write();
        let key = (account, client.clone());
        if clients.get(&key) == Some(&proxy) {
            clients.remove(&key);
        }
    }

    /// This client's session moved from `from` to `to`.
    pub fn moved(&self, account: AccountIdx, client: &Arc<str>, from: ProxyId, to: ProxyId) {
        let mut clients = self.clients.write();
        if let Some(owner) = clients.get_mut(&(account, client.clone())) {
            if *owner == from {
                *owner = to;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AccountIdx = AccountIdx(0);

    /// A handle whose actor never runs, holding `sessions`.
    fn handle(id: u32, sessions: i64) -> ProxyHandle {
        let (tx, _) = actix::dev::channel::channel::<EventProxy>(1);
        let gauge = |name: &str| IntGauge::new(format!("{name}{id}"), "test").unwrap();
        let handle = ProxyHandle {
            id: ProxyId(id),
            addr: Addr::new(tx),
            sessions: gauge("s"),
            depth: gauge("d"),
        };
        handle.sessions.set(sessions);
        handle
    }

    fn client(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn a_new_client_goes_to_the_least_loaded_accepting_proxy() {
        let directory = Directory::default();
        for (id, sessions) in [(0, 5), (1, 2), (2, 2), (3, 0)] {
            directory.add(handle(id, sessions));
        }
        let route = |name| directory.route(A, &client(name)).map(|h| h.id);
        assert_eq!(route("a"), Some(ProxyId(3)));
        directory.stop_accepting(ProxyId(3));
        assert_eq!(route("a"), Some(ProxyId(1)), "the first of a tie");
        assert_eq!(directory.accepting().len(), 3);
        directory.start_accepting(ProxyId(3));
        assert_eq!(route("a"), Some(ProxyId(3)), "accepting again");
        directory.stop_accepting(ProxyId(3));
        // Held clients go where they are held, retiring or not.
        directory.claim(A, &client("b"), ProxyId(0)).unwrap();
        assert_eq!(route("b"), Some(ProxyId(0)));
    }

    #[test]
    fn one_proxy_claims_a_client_and_a_retiring_one_claims_none() {
        let directory = Directory::default();
        directory.add(handle(0, 0));
        directory.add(handle(1, 0));
        let c = client("c");
        assert_eq!(directory.claim(A, &c, ProxyId(0)), Ok(()));
        assert_eq!(directory.claim(A, &c, ProxyId(0)), Ok(()), "its own again");
        assert_eq!(
            directory.claim(A, &c, ProxyId(1)),
            Err(ClaimError::Elsewhere(ProxyId(0)))
        );
        assert_eq!(
            directory.claim(AccountIdx(1), &c, ProxyId(1)),
            Ok(()),
            "the same id in another account is another client"
        );
        directory.stop_accepting(ProxyId(0));
        assert_eq!(
            directory.claim(A, &client("d"), ProxyId(0)),
            Err(ClaimError::Retiring)
        );
        assert_eq!(directory.claim(A, &c, ProxyId(0)), Ok(()), "still holds c");
    }

    #[test]
    fn entries_move_and_go_only_for_the_proxy_that_holds_them() {
        let directory = Directory::default();
        directory.add(handle(0, 0));
        directory.add(handle(1, 0));
        let c = client("c");
        directory.claim(A, &c, ProxyId(0)).unwrap();
        directory.release(A, &c, ProxyId(1));
        assert_eq!(directory.owner(A, &c), Some(ProxyId(0)), "not 1's to drop");
        directory.moved(A, &c, ProxyId(0), ProxyId(1));
        assert_eq!(directory.owner(A, &c), Some(ProxyId(1)));
        directory.moved(A, &c, ProxyId(0), ProxyId(2));
        assert_eq!(directory.owner(A, &c), Some(ProxyId(1)), "a stale move");
        directory.release(A, &c, ProxyId(1));
        assert_eq!(directory.owner(A, &c), None);
        assert!(directory.remove(ProxyId(0)).is_some());
        assert_eq!(
            directory.proxies().iter().map(|h| h.id).collect::<Vec<_>>(),
            [ProxyId(1)]
        );
        assert!(directory.remove(ProxyId(0)).is_none());
    }
}
