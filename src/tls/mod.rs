//! TLS: the HTTPS listener's certificates (loaded, chosen by SNI, reloaded when a file
//! changes), the session tickets' keys, and the rustls configuration built from them.
//!
//! - `certs`: PEM files → certificates with their names and expiry; the choice by SNI.
//! - `tickets`: the ticket keys one process shares across its workers, its reloads and an
//!   upgrade.
//! - `server`: the certificates in force (swapped whole, handshakes in flight keep theirs) and
//!   the rustls server configuration of a snapshot.
//! - `upstream`: a pool's rustls client configuration for TLS to its upstreams.
//!
//! Nothing here touches a socket: a session drives rustls over its own.

pub mod certs;
mod server;
pub mod tickets;
mod upstream;

pub use server::{Tls, ACME_TLS_ALPN, TICKET_KEYS_FD_VAR};
pub(crate) use upstream::roots as trust_roots;
pub use upstream::UpstreamTls;

/// What `--check` loads beyond the file: every certificate and key, as a start would. The
/// first error (`PATH: message`), or the warnings (expiry, routed hosts no certificate covers).
pub fn check_files(cfg: &crate::config::Config) -> Result<Vec<String>, String> {
    for pool in &cfg.pools {
        if let Some(t) = &pool.tls {
            UpstreamTls::new(t).map_err(|e| format!("pool '{}': {e}", pool.name))?;
        }
    }
    let Some(spec) = &cfg.tls else {
        return Ok(Vec::new());
    };
    let loaded = certs::load_all(
        &spec.certificates,
        spec.certificate_dir.as_deref(),
        &provider(),
    )?;
    Ok(certs::warnings(
        &loaded,
        &cfg.routed_hosts(),
        (crate::clock::unix_ms() / 1000) as i64,
    ))
}

/// The one crypto provider (see Cargo.toml for why this one).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why a handshake failed, as `goround_tls_handshakes_total{result="failed", reason}` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not complete within `handshake_timeout`.
    Timeout,
    /// The client closed the connection before the end.
    Eof,
    /// No protocol version in common (TLS 1.0, 1.1, or 1.2 under `min_version = "1.3"`).
    ProtocolVersion,
    /// No cipher suite, group or signature scheme in common.
    NoSharedCipher,
    /// The client offered only application protocols (ALPN) the proxy does not speak.
    NoApplicationProtocol,
    /// Not TLS, or a malformed or undecryptable record.
    BadRecord,
    /// Anything else.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order of the metrics.
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Eof,
        HandshakeFailure::ProtocolVersion,
        HandshakeFailure::NoSharedCipher,
        HandshakeFailure::NoApplicationProtocol,
        HandshakeFailure::BadRecord,
        HandshakeFailure::Other,
    ];

    /// The metric's label.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Eof => "eof",
            HandshakeFailure::ProtocolVersion => "protocol_version",
            HandshakeFailure::NoSharedCipher => "no_shared_cipher",
            HandshakeFailure::NoApplicationProtocol => "no_application_protocol",
            HandshakeFailure::BadRecord => "bad_record",
            HandshakeFailure::Other => "other",
        }
    }

    /// The reason for a rustls error met during a handshake.
    pub fn of(e: &rustls::Error) -> HandshakeFailure {
        use rustls::{Error, PeerIncompatible, PeerMisbehaved};
        match e {
            Error::NoApplicationProtocol => HandshakeFailure::NoApplicationProtocol,
            Error::PeerIncompatible(p) => match p {
                // A hello without signature_algorithms is one from before TLS 1.2 (the
                // extension is how 1.2 and 1.3 clients offer their schemes): rustls meets
                // that before the version.
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::SignatureAlgorithmsExtensionRequired
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::Tls13RequiredForQuic
                | PeerIncompatible::SupportedVersionsExtensionRequired => {
                    HandshakeFailure::ProtocolVersion
                }
                PeerIncompatible::NoCipherSuitesInCommon
                | PeerIncompatible::NoKxGroupsInCommon
                | PeerIncompatible::NoSignatureSchemesInCommon
                | PeerIncompatible::NoEcPointFormatsInCommon => HandshakeFailure::NoSharedCipher,
                _ => HandshakeFailure::Other,
            },
            Error::PeerMisbehaved(PeerMisbehaved::SelectedUnofferedApplicationProtocol) => {
                HandshakeFailure::NoApplicationProtocol
            }
            Error::InvalidMessage(_) | Error::DecryptError | Error::InappropriateMessage { .. } => {
                HandshakeFailure::BadRecord
            }
            _ => HandshakeFailure::Other,
        }
    }
}
