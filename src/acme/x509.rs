//! The certificates and requests ACME needs made here: a certificate signing request for an
//! order, the tls-alpn-01 validation certificate (RFC 8737 §3), and the self-signed
//! placeholder served for a name until its order completes.

use crate::tls::certs::Certificate;
use rcgen::{CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// A new P-256 key for a certificate.
pub fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| format!("cannot make a key: {e}"))
}

/// A CSR for `name` signed by `key`, DER.
pub fn csr(name: &str, key: &KeyPair) -> Result<Vec<u8>, String> {
    let params = CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    let req = params
        .serialize_request(key)
        .map_err(|e| format!("cannot make the CSR: {e}"))?;
    Ok(req.der().to_vec())
}

/// rcgen's self-signed certificate for `name` with `params`, ready to serve.
fn self_signed(
    mut params: CertificateParams,
    provider: &CryptoProvider,
    days: i64,
) -> Result<(Arc<CertifiedKey>, i64), String> {
    let key = new_key()?;
    let now = (crate::clock::unix_ms() / 1000) as i64;
    let not_after = now + days * 86_400;
    let (y, m, d) = civil(now - 86_400);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(not_after);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    Ok((Arc::new(CertifiedKey::new(chain, signing)), not_after))
}

/// The tls-alpn-01 certificate for `name`: self-signed, with the acmeIdentifier extension
/// holding the SHA-256 of the key authorization.
pub fn alpn_challenge(
    name: &str,
    key_authorization: &str,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(&super::jose::sha256(
            key_authorization.as_bytes(),
        )));
    Ok(self_signed(params, provider, 7)?.0)
}

/// The placeholder for `name`: self-signed, a week long (made again at each start).
pub fn placeholder(name: &str, provider: &CryptoProvider) -> Result<Certificate, String> {
    let params = CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    let (key, not_after) = self_signed(params, provider, 7)?;
    Ok(Certificate {
        key,
        names: vec![name.to_string()],
        not_after,
        cert_path: Default::default(),
        key_path: Default::default(),
        stamps: (None, None),
        placeholder: true,
    })
}

/// Unix seconds as (year, month, day), UTC: day precision is all a validity needs.
fn civil(unix: i64) -> (i32, u8, u8) {
    let (y, m, d) = crate::access_log::civil(unix.div_euclid(86_400));
    (y as i32, m as u8, d as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_days_to_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(951_782_400), (2000, 2, 29));
        assert_eq!(super::civil(1_796_515_200 + 86_399), (2026, 12, 6));
    }
}
