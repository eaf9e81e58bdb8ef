//! The certificates in force and the ticket keys of the process, and the rustls server
//! configuration a snapshot carries.
//!
//! The certificates are swapped whole (a reload, a file changed on disk): a handshake reads
//! the set once, at its ClientHello, and keeps the certificate it got. A file that cannot be
//! loaded any more keeps its old pair, and the log says why.

use super::certs::{self, CertSet, Certificate};
use super::tickets::Tickets;
use crate::config::{TlsSpec, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, Mutex, RwLock};

/// The ALPN protocol of ACME's tls-alpn-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The variable naming the descriptor an upgrading process hands its ticket keys through.
pub const TICKET_KEYS_FD_VAR: &str = "GOROUND_TICKET_KEYS_FD";

/// What the process keeps of TLS for its life: the certificates in force, the ticket keys, and
/// the files the certificates came from.
#[derive(Debug)]
pub struct Tls {
    provider: Arc<CryptoProvider>,
    /// The certificates in force: the configured ones, then the ordered ones.
    set: RwLock<Arc<CertSet>>,
    /// What `set` is made of, under one lock so that a reload and an ACME order that meet
    /// cannot publish an older combination last.
    sources: Mutex<Sources>,
    /// tls-alpn-01: the validation certificate of each name being validated.
    alpn_challenges: RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
    /// The session tickets' keys.
    tickets: Arc<Tickets>,
    /// The settings the certificates were last loaded from (the watcher reloads them).
    spec: Mutex<TlsSpec>,
    /// One reload at a time (SIGHUP and the file watcher may meet).
    reloading: Mutex<()>,
}

/// The certificates the set in force is made of.
#[derive(Debug, Default)]
struct Sources {
    /// The certificates of the configuration, in order (the first is the default).
    configured: Vec<Arc<Certificate>>,
    /// The certificates an ACME CA issued (or their placeholders until it does), by name.
    ordered: std::collections::BTreeMap<String, Arc<Certificate>>,
}

/// The SNI resolver rustls asks at each ClientHello.
#[derive(Debug)]
struct Resolver(Arc<Tls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN))
        {
            // Only the validation certificate answers acme-tls/1 (RFC 8737 §3), and only
            // while that name is being validated.
            let name = hello.server_name()?.to_ascii_lowercase();
            let challenges = self
                .0
                .alpn_challenges
                .read()
                .unwrap_or_else(|p| p.into_inner());
            return challenges.get(&name).cloned();
        }
        let set = self.0.certs();
        let pick = set.pick(hello.server_name());
        set.certs.get(pick.index).map(|c| Arc::clone(&c.key))
    }
}

/// Every certificate `spec` names, loaded; the first error ends it.
pub fn load_all(spec: &TlsSpec, provider: &CryptoProvider) -> Result<Vec<Certificate>, String> {
    certs::load_all(
        &spec.certificates,
        spec.certificate_dir.as_deref(),
        provider,
    )
}

impl Tls {
    /// Load `spec`'s certificates (any error stops the start) and make or take the ticket
    /// keys: from `ticket_key_file`, or `inherited` from the process this one upgrades, or
    /// made here.
    pub fn start(
        spec: &TlsSpec,
        routed_hosts: &[&str],
        inherited: Option<&[u8]>,
    ) -> Result<Arc<Tls>, String> {
        let provider = super::provider();
        let loaded = load_all(spec, &provider)?;
        for w in certs::warnings(
            &loaded,
            routed_hosts,
            (crate::clock::unix_ms() / 1000) as i64,
        ) {
            log::warn!("TLS: {w}");
        }
        let tickets = match &spec.ticket_key_file {
            Some(p) => Tickets::from_file_bytes(
                &std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?,
            )
            .map_err(|e| format!("{}: {e}", p.display()))?,
            None => Tickets::random(inherited)?,
        };
        let configured: Vec<Arc<Certificate>> = loaded.into_iter().map(Arc::new).collect();
        Ok(Arc::new(Tls {
            provider,
            set: RwLock::new(Arc::new(CertSet::new(configured.clone()))),
            sources: Mutex::new(Sources {
                configured,
                ordered: Default::default(),
            }),
            alpn_challenges: RwLock::new(Default::default()),
            tickets: Arc::new(tickets),
            spec: Mutex::new(spec.clone()),
            reloading: Mutex::new(()),
        }))
    }

    /// The certificates in force.
    pub fn certs(&self) -> Arc<CertSet> {
        Arc::clone(&self.set.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The ticket keys, 80 bytes each, for the process an upgrade starts.
    pub fn export_tickets(&self) -> Vec<u8> {
        self.tickets.export()
    }

    /// The rustls configuration for `spec`, over the certificates in force and the ticket
    /// keys of the process (both shared: a reload builds a new configuration around them).
    pub fn server_config(
        self: &Arc<Self>,
        spec: &TlsSpec,
        alpn_challenges: bool,
    ) -> Result<Arc<ServerConfig>, String> {
        let versions: &[&rustls::SupportedProtocolVersion] = match spec.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut cfg = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        // HTTP/1.1 only: a client that offers ALPN and not it gets no_application_protocol
        // (RFC 7301 §3.2).
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        if alpn_challenges {
            cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        // Resumption by ticket only: stateless, shared by the workers, kept across upgrades.
        // No session cache that would be per process.
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        if spec.session_tickets {
            cfg.ticketer = Arc::clone(&self.tickets) as _;
            // One ticket per handshake is what a client uses; each costs an encryption.
            cfg.send_tls13_tickets = 1;
        } else {
            cfg.send_tls13_tickets = 0;
        }
        // No 0-RTT (replayable requests); rustls has no renegotiation to refuse.
        cfg.max_early_data_size = 0;
        Ok(Arc::new(cfg))
    }

    /// Load `spec`'s certificates again (a reload). A pair that cannot be loaded keeps its old
    /// one when there is one; each problem is returned, to be logged. With nothing loadable
    /// at all, the certificates in force stay.
    pub fn reload(&self, spec: &TlsSpec) -> Vec<String> {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems = Vec::new();
        // The configured certificates (not the ordered ones, which ACME keeps).
        let old = self.configured();
        // A pair kept after a failed load carries the stamps of the files as they are now, so
        // the watcher tries again only when they change again (not every round, warning).
        let kept = |cert: &std::path::Path| {
            old.iter().find(|c| c.cert_path == cert).map(|c| {
                let mut again = Certificate::clone(c);
                again.stamps = (certs::mtime(&c.cert_path), certs::mtime(&c.key_path));
                Arc::new(again)
            })
        };
        let mut fresh: Vec<Arc<Certificate>> = Vec::new();
        for (cert, key) in &spec.certificates {
            match certs::load_pair(cert, key, &self.provider) {
                Ok(c) => fresh.push(Arc::new(c)),
                Err(e) => match kept(cert) {
                    Some(c) => {
                        problems.push(format!("{e}; the pair loaded before is kept"));
                        fresh.push(c);
                    }
                    None => problems.push(format!("{e}; not served")),
                },
            }
        }
        if let Some(dir) = &spec.certificate_dir {
            match certs::load_dir(dir, &self.provider) {
                Ok(loaded) => fresh.extend(loaded.into_iter().map(Arc::new)),
                Err(e) => {
                    problems.push(format!(
                        "{e}; the certificates loaded from it before are kept"
                    ));
                    fresh.extend(
                        old.iter()
                            .filter(|c| c.cert_path.starts_with(dir))
                            .map(Arc::clone),
                    );
                }
            }
        }
        let named = !spec.certificates.is_empty() || spec.certificate_dir.is_some();
        if fresh.is_empty() && named {
            problems.push("no certificate could be loaded: the ones in force stay".to_string());
        } else {
            let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            sources.configured = fresh;
            self.publish(&sources);
        }
        *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = spec.clone();
        if spec.ticket_key_file.is_none() {
            self.tickets.forget_file();
        }
        if let Some(p) = &spec.ticket_key_file {
            match std::fs::read(p) {
                Ok(bytes) => {
                    if let Err(e) = self.tickets.replace_from_file(&bytes) {
                        problems.push(format!("{}: {e}; the ticket keys in use stay", p.display()));
                    }
                }
                Err(e) => problems.push(format!(
                    "{}: cannot read: {e}; the ticket keys in use stay",
                    p.display()
                )),
            }
        }
        problems
    }

    /// The configured certificates, in order.
    fn configured(&self) -> Vec<Arc<Certificate>> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .configured
            .clone()
    }

    /// The set in force made again from `sources` (whose lock the caller holds).
    fn publish(&self, sources: &Sources) {
        let mut all = sources.configured.clone();
        all.extend(sources.ordered.values().cloned());
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(CertSet::new(all));
    }

    /// Serve `cert` for `name` from now on (an ACME order completed, or its placeholder until
    /// then); `None` stops serving one for it. Handshakes in flight keep theirs.
    pub fn set_ordered(&self, name: &str, cert: Option<Arc<Certificate>>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        match cert {
            Some(c) => sources.ordered.insert(name.to_string(), c),
            None => sources.ordered.remove(name),
        };
        self.publish(&sources);
    }

    /// The configured certificates that cover `name` (an ACME order is not made for it).
    pub fn configured_covers(&self, name: &str) -> bool {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .configured
            .iter()
            .any(|c| c.names.iter().any(|n| certs::name_covers(n, name)))
    }

    /// tls-alpn-01: answer acme-tls/1 handshakes for `name` with `cert` (`None`: no more).
    pub fn set_alpn_challenge(&self, name: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut map = self
            .alpn_challenges
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match cert {
            Some(c) => map.insert(name.to_string(), c),
            None => map.remove(name),
        };
    }

    /// The crypto provider of the process.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Whether a file of the certificates in force changed on disk since it was loaded (a
    /// renewal by certbot or cert-manager), or a certificate directory gained or lost a file.
    pub fn changed_on_disk(&self) -> bool {
        // The configured certificates only: ACME's files are its own to watch.
        let configured = self.configured();
        let files_changed = configured
            .iter()
            .any(|c| (certs::mtime(&c.cert_path), certs::mtime(&c.key_path)) != c.stamps);
        if files_changed {
            return true;
        }
        let spec = self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone();
        spec.certificate_dir.as_ref().is_some_and(|dir| {
            let on_disk = std::fs::read_dir(dir)
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
                        .count()
                })
                .unwrap_or(0);
            let loaded = configured
                .iter()
                .filter(|c| c.cert_path.starts_with(dir))
                .count();
            on_disk != loaded
        })
    }

    /// Reload the certificates from the settings last used, when a file changed on disk;
    /// returns what was done and what went wrong, to be logged (nothing when nothing changed).
    pub fn reload_if_changed(&self) -> Option<Vec<String>> {
        if !self.changed_on_disk() {
            return None;
        }
        let spec = self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(self.reload(&spec))
    }
}
