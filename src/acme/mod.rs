//! Automatic certificates: each `[acme]` domain gets a certificate from an ACME CA (RFC 8555)
//! and has it renewed before it expires, on a thread of its own; nothing of it runs on a
//! worker, and nothing exists without `[acme]`.
//!
//! - `jose`: the account key, JWK thumbprint and signed requests.
//! - `http`: a small blocking HTTPS client.
//! - `protocol`: directory, nonces, account, order, challenge, finalisation, download.
//! - `x509`: the CSR, the tls-alpn-01 certificate and the placeholder.
//! - `store`: the storage directory and the fleet's lock.
//!
//! Until a name has a certificate its handshakes get a self-signed placeholder; the moment an
//! order completes, new handshakes get the real one (the TLS certificate set is swapped). A
//! failed order keeps what is served and is tried again later, each time later (1 min, 2, 4 …
//! up to 6 h, or the CA's Retry-After).

mod http;
mod jose;
mod protocol;
mod store;
mod x509;

use crate::config::{AcmeChallenge, AcmeSpec};
use crate::tls::Tls;
use protocol::{AcmeError, Client};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use store::Storage;

/// The path http-01 tokens are asked for on (RFC 8555 §8.3).
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The first wait after a failed order; each failure in a row doubles it.
const RETRY_FIRST: i64 = 60;
/// The longest wait between two tries.
const RETRY_MAX: i64 = 6 * 3600;
/// How often the storage is looked at when nothing is due (another instance of a fleet may
/// have renewed a certificate; a reload may have changed the domains).
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// How many http-01 tokens may wait at once (one per name being validated).
const MAX_TOKENS: usize = 1024;

/// Where a name stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainState {
    /// No certificate yet: the placeholder is served. The last failure, if any.
    Pending { error: Option<String> },
    /// A certificate from the CA is served.
    Valid,
    /// A certificate is served, but renewing it fails since then (Unix seconds).
    Failing { since: i64, error: String },
    /// A configured certificate covers it: nothing is ordered.
    Configured,
}

impl DomainState {
    /// The state's name in `/status`.
    pub fn name(&self) -> &'static str {
        match self {
            DomainState::Pending { .. } => "pending",
            DomainState::Valid => "valid",
            DomainState::Failing { .. } => "failing",
            DomainState::Configured => "configured",
        }
    }
}

/// One domain, as `/status` and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct DomainStatus {
    pub name: String,
    pub state: DomainState,
    /// When the served certificate from the CA expires (Unix seconds).
    pub not_after: Option<i64>,
    /// When it is next renewed or ordered (Unix seconds).
    pub next_renewal: Option<i64>,
}

/// What the process keeps of ACME: the settings, the http-01 tokens being validated, the
/// domains' states and the order counts. Shared by the ACME thread, the workers (tokens) and
/// the admin pages.
#[derive(Debug)]
pub struct Acme {
    spec: Mutex<AcmeSpec>,
    /// Wakes the ACME thread when the settings change.
    changed: Condvar,
    /// http-01: token → key authorization.
    tokens: RwLock<HashMap<String, String>>,
    domains: Mutex<Vec<DomainStatus>>,
    pub orders_ok: AtomicU64,
    pub orders_failed: AtomicU64,
}

impl Acme {
    /// Check the storage and the trust for the CA, put each domain's stored certificate (or
    /// its placeholder) in service, and start the thread that orders and renews.
    pub fn start(spec: &AcmeSpec, tls: Arc<Tls>) -> Result<Arc<Acme>, String> {
        let storage = Storage::open(&spec.storage)?;
        let key = storage.account_key()?;
        let client = http::Client::new(spec.ca_bundle.as_deref())?;
        let acme = Arc::new(Acme {
            spec: Mutex::new(spec.clone()),
            changed: Condvar::new(),
            tokens: RwLock::new(HashMap::new()),
            domains: Mutex::new(Vec::new()),
            orders_ok: AtomicU64::new(0),
            orders_failed: AtomicU64::new(0),
        });
        let mut manager = Manager {
            acme: Arc::clone(&acme),
            tls,
            storage,
            http: client,
            key: Some(key),
            client: None,
            slots: Vec::new(),
            spec: spec.clone(),
        };
        manager.sync_domains();
        std::thread::Builder::new()
            .name("acme".into())
            .spawn(move || manager.run())
            .map_err(|e| format!("cannot start the ACME thread: {e}"))?;
        Ok(acme)
    }

    /// The key authorization for an http-01 `token`, while it is being validated.
    pub fn http_token(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// New settings (a reload): new domains are ordered, dropped ones no longer served.
    pub fn update(&self, spec: &AcmeSpec) {
        let mut s = self.spec.lock().unwrap_or_else(|p| p.into_inner());
        if spec.storage != s.storage || spec.ca_bundle != s.ca_bundle {
            log::warn!(
                "ACME: a new storage or ca_bundle takes effect at the next start or upgrade"
            );
        }
        // The storage and the CA's trust stay what the thread started with.
        let next = AcmeSpec {
            storage: s.storage.clone(),
            ca_bundle: s.ca_bundle.clone(),
            ..spec.clone()
        };
        if *s != next {
            *s = next;
            self.changed.notify_all();
        }
    }

    /// Every domain's state, in the order configured.
    pub fn domains(&self) -> Vec<DomainStatus> {
        self.domains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The directory URL in use.
    pub fn directory(&self) -> String {
        self.spec
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .directory
            .clone()
    }
}

/// One domain as the ACME thread tracks it.
#[derive(Debug)]
struct Slot {
    name: String,
    /// When the CA's certificate in service expires (none: the placeholder is served).
    not_after: Option<i64>,
    /// The stored files' modification time as last loaded (another instance may renew).
    stamp: Option<std::time::SystemTime>,
    /// No order before this (Unix seconds): after failures, or the CA's Retry-After.
    not_before: i64,
    /// No order before this either: the CA's Retry-After (kept through new settings).
    ca_until: i64,
    failures: u32,
    /// Since when orders fail, and the last reason (none: the last one succeeded).
    failing: Option<(i64, String)>,
    /// A configured certificate covers the name: nothing is ordered.
    covered: bool,
}

impl Slot {
    /// Where the name stands, from what is served and how the last order went.
    fn state(&self, now: i64) -> DomainState {
        let served = self.not_after.is_some_and(|t| t > now);
        match (self.covered, served, &self.failing) {
            (true, _, _) => DomainState::Configured,
            (false, false, f) => DomainState::Pending {
                error: f.as_ref().map(|(_, e)| e.clone()),
            },
            (false, true, None) => DomainState::Valid,
            (false, true, Some((since, error))) => DomainState::Failing {
                since: *since,
                error: error.clone(),
            },
        }
    }
}

/// The ACME thread's state.
struct Manager {
    acme: Arc<Acme>,
    tls: Arc<Tls>,
    storage: Storage,
    http: http::Client,
    /// The account key, until the client (which then owns it) is made.
    key: Option<jose::AccountKey>,
    /// The CA's client with its account, once made.
    client: Option<Client>,
    slots: Vec<Slot>,
    spec: AcmeSpec,
}

fn now_unix() -> i64 {
    (crate::clock::unix_ms() / 1000) as i64
}

impl Manager {
    fn run(mut self) {
        loop {
            let spec = self
                .acme
                .spec
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if spec != self.spec {
                if spec.directory != self.spec.directory || spec.email != self.spec.email {
                    self.client = None;
                }
                self.spec = spec;
                // New settings (a fixed directory, another challenge) are tried at once, not
                // after the backoff the old ones earned; a wait the CA asked for stays.
                for slot in &mut self.slots {
                    slot.not_before = i64::MIN;
                }
            }
            self.sync_domains();
            let now = now_unix();
            if let Some(i) = self.due(now) {
                match self.storage.lock() {
                    Ok(Some(lock)) => {
                        // What another instance stored meanwhile counts first.
                        self.look_at_storage(i);
                        if self.due_at(&self.slots[i]) <= now {
                            self.renew(i);
                        }
                        drop(lock);
                    }
                    Ok(None) => {
                        // Another instance orders: look again soon at what it stores.
                        self.slots[i].not_before = now + LOOK_EVERY.as_secs() as i64;
                    }
                    Err(e) => {
                        log::warn!("ACME: {e}");
                        self.slots[i].not_before = now + RETRY_FIRST;
                    }
                }
                self.publish();
                continue;
            }
            self.publish();
            let next = self
                .slots
                .iter()
                .filter(|s| !s.covered)
                .map(|s| self.due_at(s))
                .min()
                .unwrap_or(i64::MAX);
            let wait = Duration::from_secs(
                (next.saturating_sub(now)).clamp(1, LOOK_EVERY.as_secs() as i64) as u64,
            );
            // Woken by new settings, also ones that came since they were read above.
            let guard = self.acme.spec.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self
                .acme
                .changed
                .wait_timeout_while(guard, wait, |s| *s == self.spec)
                .unwrap_or_else(|p| p.into_inner());
            for i in 0..self.slots.len() {
                self.look_at_storage(i);
            }
        }
    }

    /// When `slot` is next ordered or renewed.
    fn due_at(&self, slot: &Slot) -> i64 {
        let renew = slot.not_after.map_or(i64::MIN, |t| {
            t.saturating_sub(self.spec.renew_before.as_secs().min(i64::MAX as u64) as i64)
        });
        renew.max(slot.not_before).max(slot.ca_until)
    }

    /// The first slot due now.
    fn due(&self, now: i64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| !s.covered && self.due_at(s) <= now)
    }

    /// Make the slots follow the settings' domains: a new one starts with its stored
    /// certificate or the placeholder; one no longer listed is no longer served.
    fn sync_domains(&mut self) {
        let wanted = self.spec.domains.clone();
        for gone in self.slots.iter().filter(|s| !wanted.contains(&s.name)) {
            self.tls.set_ordered(&gone.name, None);
        }
        self.slots.retain(|s| wanted.contains(&s.name));
        for name in wanted {
            if self.slots.iter().any(|s| s.name == name) {
                continue;
            }
            let mut slot = Slot {
                name: name.clone(),
                not_after: None,
                stamp: None,
                not_before: i64::MIN,
                ca_until: i64::MIN,
                failures: 0,
                failing: None,
                covered: self.tls.configured_covers(&name),
            };
            if slot.covered {
                self.slots.push(slot);
                continue;
            }
            if let Some((at, failures)) = self.storage.retry(&name) {
                slot.not_before = at;
                slot.failures = failures;
            }
            self.slots.push(slot);
            let i = self.slots.len() - 1;
            self.look_at_storage(i);
            if self.slots[i].not_after.is_none() {
                match x509::placeholder(&name, self.tls.provider()) {
                    Ok(p) => {
                        log::warn!(
                            "ACME: no certificate for {name} yet: its handshakes get a \
                             self-signed placeholder until the order completes"
                        );
                        self.tls.set_ordered(&name, Some(Arc::new(p)));
                    }
                    Err(e) => log::error!("ACME: {name}: no placeholder: {e}"),
                }
            }
        }
        self.publish();
    }

    /// Serve the stored certificate of slot `i` when its files changed since last loaded (at
    /// start, or renewed by another instance).
    fn look_at_storage(&mut self, i: usize) {
        let slot = &self.slots[i];
        if slot.covered {
            return;
        }
        let (crt, key) = self.storage.cert_paths(&slot.name);
        let stamp = crate::tls::certs::mtime(&crt);
        if stamp.is_none() || stamp == slot.stamp {
            return;
        }
        match crate::tls::certs::load_pair(&crt, &key, self.tls.provider()) {
            Ok(c) => {
                let name = slot.name.clone();
                if !c
                    .names
                    .iter()
                    .any(|n| crate::tls::certs::name_covers(n, &name))
                {
                    log::warn!("ACME: {}: does not cover {name}: ignored", crt.display());
                    self.slots[i].stamp = stamp;
                    return;
                }
                let not_after = c.not_after;
                let newer = self.slots[i].not_after.is_none_or(|t| not_after > t);
                self.slots[i].stamp = stamp;
                if newer {
                    self.tls.set_ordered(&name, Some(Arc::new(c)));
                    let slot = &mut self.slots[i];
                    slot.not_after = Some(not_after);
                    if not_after > now_unix() {
                        slot.failing = None;
                        slot.failures = 0;
                    }
                }
            }
            // Half-written by another instance, or damaged: looked at again when it changes.
            Err(e) => {
                log::warn!("ACME: {e}");
                self.slots[i].stamp = stamp;
            }
        }
    }

    /// Order (or renew) slot `i`'s certificate now.
    fn renew(&mut self, i: usize) {
        let name = self.slots[i].name.clone();
        log::info!(
            "ACME: ordering a certificate for {name} from {} ({})",
            self.spec.directory,
            self.spec.challenge.name()
        );
        match self.order(&name) {
            Ok((chain, key)) => {
                self.acme.orders_ok.fetch_add(1, Ordering::Relaxed);
                let stored = self
                    .storage
                    .save_cert(&name, &chain, &key)
                    .map(|_| self.storage.cert_paths(&name))
                    .and_then(|(crt, key)| {
                        crate::tls::certs::load_pair(&crt, &key, self.tls.provider())
                    });
                match stored {
                    Ok(c) => {
                        let line = format!(
                            "ACME: certificate for {name} issued, valid until {}",
                            crate::access_log::rfc3339_secs(c.not_after)
                        );
                        let slot = &mut self.slots[i];
                        slot.not_after = Some(c.not_after);
                        slot.stamp = crate::tls::certs::mtime(&c.cert_path);
                        slot.failures = 0;
                        // Not again before a tenth of its life has passed, even when
                        // renew_before is longer than the CA's certificates live.
                        let now = now_unix();
                        slot.not_before = now + ((c.not_after - now) / 10).max(RETRY_FIRST);
                        slot.failing = None;
                        let renew_before = self.spec.renew_before.as_secs() as i64;
                        if c.not_after.saturating_sub(renew_before) <= now {
                            log::warn!(
                                "ACME: renew_before ({} s) is as long as {name}'s certificate \
                                 lives ({} s): it is renewed every tenth of its life instead",
                                renew_before,
                                c.not_after - now
                            );
                        }
                        self.tls.set_ordered(&name, Some(Arc::new(c)));
                        self.publish();
                        log::info!("{line}");
                    }
                    Err(e) => self.failed(i, &format!("the issued certificate: {e}"), None),
                }
            }
            Err(e) => {
                if matches!(e, AcmeError::Transport(_)) {
                    // The account is looked up again with the next try (a CA restarted).
                    self.client = None;
                }
                let text = e.to_string();
                self.failed(i, &text, e.retry_after());
            }
        }
    }

    /// Count a failed order for slot `i` and put the next try off.
    fn failed(&mut self, i: usize, error: &str, retry_after: Option<Duration>) {
        self.acme.orders_failed.fetch_add(1, Ordering::Relaxed);
        let now = now_unix();
        let slot = &mut self.slots[i];
        slot.failures = slot.failures.saturating_add(1);
        let backoff = RETRY_FIRST
            .saturating_mul(1i64 << (slot.failures - 1).min(20))
            .min(RETRY_MAX);
        slot.not_before = now + backoff;
        if let Some(d) = retry_after {
            slot.ca_until = now.saturating_add(d.as_secs() as i64);
        }
        let next = slot.not_before.max(slot.ca_until);
        self.storage.set_retry(&slot.name, next, slot.failures);
        let since = slot.failing.as_ref().map_or(now, |(since, _)| *since);
        slot.failing = Some((since, error.to_string()));
        let line = format!(
            "ACME: the order for {} failed ({} in a row): {error}; next try in {} s{}",
            slot.name,
            slot.failures,
            next - now,
            if slot.not_after.is_some() {
                "; the certificate in service stays"
            } else {
                ""
            }
        );
        // The pages show it by the time the log says it.
        self.publish();
        log::warn!("{line}");
    }

    /// The client with its account, made when first needed.
    fn client(&mut self) -> Result<&mut Client, AcmeError> {
        if self.client.is_none() {
            let key = match self.key.take() {
                Some(k) => k,
                None => self.storage.account_key().map_err(AcmeError::Transport)?,
            };
            let mut c = Client::new(self.http.clone(), &self.spec.directory, key)?;
            c.account(self.spec.email.as_deref())?;
            self.client = Some(c);
        }
        self.client
            .as_mut()
            .ok_or_else(|| AcmeError::Transport("no client".to_string()))
    }

    /// One order for `name`: its challenge answered while the CA validates, then the CSR;
    /// returns the chain and the key (PEM).
    fn order(&mut self, name: &str) -> Result<(String, String), AcmeError> {
        let kind = self.spec.challenge;
        let tls = Arc::clone(&self.tls);
        let acme = Arc::clone(&self.acme);
        let client = self.client()?;
        let (order_url, mut order, challenge) = client.order(name, kind.name())?;
        if let Some(ch) = challenge {
            let key_authorization = format!("{}.{}", ch.token, client.thumbprint());
            match kind {
                AcmeChallenge::Http01 => {
                    let mut tokens = acme.tokens.write().unwrap_or_else(|p| p.into_inner());
                    if tokens.len() >= MAX_TOKENS {
                        tokens.clear();
                    }
                    tokens.insert(ch.token.clone(), key_authorization);
                }
                AcmeChallenge::TlsAlpn01 => {
                    let cert = x509::alpn_challenge(name, &key_authorization, tls.provider())
                        .map_err(AcmeError::Order)?;
                    tls.set_alpn_challenge(name, Some(cert));
                }
            }
            let validated = client.validate(&ch, &order_url);
            match kind {
                AcmeChallenge::Http01 => {
                    acme.tokens
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&ch.token);
                }
                AcmeChallenge::TlsAlpn01 => tls.set_alpn_challenge(name, None),
            }
            order = validated?;
        }
        let key = x509::new_key().map_err(AcmeError::Order)?;
        let csr = x509::csr(name, &key).map_err(AcmeError::Order)?;
        let chain = client.finalize(&order, &order_url, &csr)?;
        Ok((chain, key.serialize_pem()))
    }

    /// The domains' states for the admin pages.
    fn publish(&self) {
        let now = now_unix();
        let list = self
            .slots
            .iter()
            .map(|s| DomainStatus {
                name: s.name.clone(),
                state: s.state(now),
                not_after: s.not_after,
                next_renewal: (!s.covered).then(|| self.due_at(s).max(now)),
            })
            .collect();
        *self.acme.domains.lock().unwrap_or_else(|p| p.into_inner()) = list;
    }
}
