//! JSON Web Signatures as ACME uses them (RFC 8555 §6.2, RFC 7515): the account's ES256 key,
//! its JWK and thumbprint (RFC 7638), and the flattened JSON serialisation of a signed request.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let digits = chunk.len() + 1;
        for i in 0..4 {
            if i < digits {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// base64url without padding (RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    encode(data, URL_SAFE, false)
}

/// `data` as a PEM block of `label`.
pub fn pem(label: &str, data: &[u8]) -> String {
    let body = encode(data, STANDARD, true);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The account key: ECDSA P-256, signing ES256.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey")
    }
}

impl AccountKey {
    /// A new key.
    pub fn generate() -> Result<AccountKey, String> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot make an account key".to_string())?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// The key of a PKCS#8 PEM file (as [`to_pem`](AccountKey::to_pem) writes it).
    pub fn from_pem(pem: &[u8]) -> Result<AccountKey, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PKCS#8 PEM key ({e})"))?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    fn from_pkcs8(der: &[u8]) -> Result<AccountKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| format!("not an ECDSA P-256 key ({e})"))?;
        Ok(AccountKey {
            pair,
            pkcs8: der.to_vec(),
            rng: SystemRandom::new(),
        })
    }

    /// The key as a PKCS#8 PEM file.
    pub fn to_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The public key as a JWK, its members in the order RFC 7638 hashes them.
    pub fn jwk(&self) -> String {
        // Uncompressed point: 0x04, X (32 bytes), Y (32 bytes).
        let point = self.pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64url(x),
            b64url(y)
        )
    }

    /// The JWK thumbprint (RFC 7638), as key authorizations use it.
    pub fn thumbprint(&self) -> String {
        b64url(&sha256(self.jwk().as_bytes()))
    }

    /// A signed request body: `kid` names the account once it exists, else the JWK goes in
    /// the header (newAccount). An empty `payload` is a POST-as-GET.
    pub fn sign(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: &str,
    ) -> Result<String, String> {
        let key = match kid {
            Some(k) => format!(r#""kid":{}"#, crate::text::json_str(k)),
            None => format!(r#""jwk":{}"#, self.jwk()),
        };
        let protected = b64url(
            format!(
                r#"{{"alg":"ES256",{key},"nonce":{},"url":{}}}"#,
                crate::text::json_str(nonce),
                crate::text::json_str(url)
            )
            .as_bytes(),
        );
        let payload = b64url(payload.as_bytes());
        let signing_input = format!("{protected}.{payload}");
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "cannot sign".to_string())?;
        Ok(format!(
            r#"{{"protected":"{protected}","payload":"{payload}","signature":"{}"}}"#,
            b64url(sig.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_the_rfcs_write_it() {
        // RFC 4648 §10.
        for (plain, std, url) in [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg==", "Zm9vYg"),
            ("fooba", "Zm9vYmE=", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes(), STANDARD, true), std);
            assert_eq!(b64url(plain.as_bytes()), url);
        }
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_key_survives_its_pem_and_signs_what_verifies() {
        let key = AccountKey::generate().unwrap();
        let again = AccountKey::from_pem(key.to_pem().as_bytes()).unwrap();
        assert_eq!(key.jwk(), again.jwk());
        assert_eq!(key.thumbprint().len(), 43);
        let jws = again
            .sign("https://ca/new", "n0nce", Some("https://ca/acct/1"), "{}")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&jws).unwrap();
        let (p, pl, s) = (
            v["protected"].as_str().unwrap(),
            v["payload"].as_str().unwrap(),
            v["signature"].as_str().unwrap(),
        );
        assert_eq!(pl, "e30");
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            key.pair.public_key().as_ref().to_vec(),
        );
        let decode = |t: &str| {
            let mut bits = 0u32;
            let mut n = 0;
            let mut out = Vec::new();
            for c in t.bytes() {
                let i = URL_SAFE.iter().position(|&a| a == c).unwrap() as u32;
                bits = (bits << 6) | i;
                n += 6;
                if n >= 8 {
                    n -= 8;
                    out.push((bits >> n) as u8);
                }
            }
            out
        };
        public
            .verify(format!("{p}.{pl}").as_bytes(), &decode(s))
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(&decode(p)).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "https://ca/acct/1");
        assert_eq!(header["nonce"], "n0nce");
        assert_eq!(header["url"], "https://ca/new");
    }
}
