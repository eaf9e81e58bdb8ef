//! TLS to upstreams: a pool's rustls client configuration (its trust roots, or no
//! verification at all when the operator asked for that) and the name each upstream is
//! verified against.

use crate::config::UpstreamTlsSpec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// A pool's TLS to its upstreams, ready to connect.
#[derive(Debug)]
pub struct UpstreamTls {
    /// Shared by every connection of the pool, on every worker (its session cache too: a new
    /// connection to an upstream resumes a session of an earlier one).
    pub config: Arc<ClientConfig>,
    /// `tls_server_name`, parsed; `None`: each upstream's host.
    server_name: Option<ServerName<'static>>,
}

impl UpstreamTls {
    /// The configuration for `spec`: its CA file's certificates, or the system's trust store.
    /// Errors read `PATH: message` (a CA file) or say what is missing.
    pub fn new(spec: &UpstreamTlsSpec) -> Result<UpstreamTls, String> {
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS to upstreams: {e}"))?;
        let mut config = if spec.verify {
            builder
                .with_root_certificates(roots(spec.ca.as_deref())?)
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = match &spec.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("tls_server_name '{n}': {e}"))?,
            ),
            None => None,
        };
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name an upstream named `upstream` (`host:port`, as configured) is sent as SNI and
    /// verified against: `tls_server_name`, else its host (an IP address is verified against
    /// the certificate's IP addresses and sends no SNI).
    pub fn name_for(&self, upstream: &str) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = host_of(upstream);
        ServerName::try_from(host.to_string())
            .map_err(|e| format!("{upstream}: no TLS server name in '{host}' ({e})"))
    }
}

/// The host of `host:port` or `[v6]:port` (or the whole text without a port).
fn host_of(upstream: &str) -> &str {
    let text = upstream
        .strip_prefix("http://")
        .unwrap_or(upstream)
        .trim_end_matches('/');
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => text,
    }
}

/// The trust roots: the certificates of `ca` (PEM), or the system's store.
pub(crate) fn roots(ca: Option<&std::path::Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "{}: holds no usable CA certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), |e| e.to_string());
                return Err(format!(
                    "the system's trust store is empty ({why}); install ca-certificates, or \
                     name the CA certificates (a pool's tls_ca, [acme] ca_bundle)"
                ));
            }
        }
    }
    Ok(store)
}

/// `tls_verify = false`: any certificate for any name. The handshake's signatures are still
/// checked (the key exchange must be with the holder of the certificate's key), so this
/// skips only the question of whom that key belongs to.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_an_upstream_as_written() {
        assert_eq!(host_of("api.internal:8443"), "api.internal");
        assert_eq!(host_of("10.0.0.7:443"), "10.0.0.7");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("http://api.internal:8080/"), "api.internal");
        assert_eq!(host_of("api.internal"), "api.internal");
    }
}
