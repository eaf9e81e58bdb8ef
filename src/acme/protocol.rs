//! The ACME protocol (RFC 8555) as a client: the directory, nonces, the account, an order for
//! one name, its authorization and challenge, the finalisation with a CSR and the download of
//! the certificate. Blocking, on the ACME thread; every wait is bounded.

use super::http::{self, Response};
use super::jose::AccountKey;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long an order may take from its creation to its certificate.
const ORDER_DEADLINE: Duration = Duration::from_secs(120);
/// Between two looks at a pending authorization or order (unless Retry-After says more).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// A badNonce answer is retried with the fresh nonce it carries, this many times.
const NONCE_RETRIES: u32 = 3;

/// Why an ACME exchange failed.
#[derive(Debug)]
pub enum AcmeError {
    /// The CA could not be reached, or answered something that is not ACME.
    Transport(String),
    /// The CA answered with a problem document (RFC 8555 §6.7).
    Problem {
        status: u16,
        kind: String,
        detail: String,
        /// Retry-After, when the CA gave one (rate limits).
        retry_after: Option<Duration>,
    },
    /// The order or its authorization became invalid, or took too long.
    Order(String),
}

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcmeError::Transport(m) | AcmeError::Order(m) => f.write_str(m),
            AcmeError::Problem {
                status,
                kind,
                detail,
                ..
            } => {
                let kind = kind
                    .strip_prefix("urn:ietf:params:acme:error:")
                    .unwrap_or(kind);
                write!(f, "{kind} ({status}): {detail}")
            }
        }
    }
}

impl AcmeError {
    /// How long the CA asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcmeError::Problem { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn transport(m: impl Into<String>) -> AcmeError {
    AcmeError::Transport(m.into())
}

/// The CA's endpoints.
#[derive(Debug)]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

/// A challenge the CA offers for a name.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub url: String,
    pub token: String,
}

/// A client bound to one CA and one account key.
#[derive(Debug)]
pub struct Client {
    http: http::Client,
    dir: Directory,
    key: AccountKey,
    kid: Option<String>,
    nonce: Option<String>,
}

/// Retry-After as seconds (the HTTP-date form is not used by ACME CAs in practice).
fn retry_after(r: &Response) -> Option<Duration> {
    r.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(86_400)))
}

fn json_body(r: &Response) -> Result<Value, AcmeError> {
    serde_json::from_slice(&r.body)
        .map_err(|e| transport(format!("the CA answered {} with no JSON ({e})", r.status)))
}

fn text(v: &Value, key: &str) -> Result<String, AcmeError> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| transport(format!("the CA's answer lacks '{key}'")))
}

impl Client {
    /// Read the directory at `url`.
    pub fn new(http: http::Client, url: &str, key: AccountKey) -> Result<Client, AcmeError> {
        let r = http.request("GET", url, None, b"").map_err(transport)?;
        if r.status != 200 {
            return Err(transport(format!("directory {url}: status {}", r.status)));
        }
        let v = json_body(&r)?;
        let dir = Directory {
            new_nonce: text(&v, "newNonce")?,
            new_account: text(&v, "newAccount")?,
            new_order: text(&v, "newOrder")?,
        };
        Ok(Client {
            http,
            dir,
            key,
            kid: None,
            nonce: None,
        })
    }

    /// The account key's thumbprint, for key authorizations.
    pub fn thumbprint(&self) -> String {
        self.key.thumbprint()
    }

    fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let r = self
            .http
            .request("HEAD", &self.dir.new_nonce, None, b"")
            .map_err(transport)?;
        r.header("replay-nonce")
            .map(str::to_string)
            .ok_or_else(|| transport("newNonce gave no Replay-Nonce"))
    }

    /// A signed POST (`payload` `None`: POST-as-GET). A problem document becomes an error; a
    /// badNonce is retried with the nonce it carried.
    fn post(&mut self, url: &str, payload: Option<&Value>) -> Result<Response, AcmeError> {
        let body = payload.map_or(String::new(), Value::to_string);
        let mut tries = 0;
        loop {
            let nonce = self.fresh_nonce()?;
            let jws = self
                .key
                .sign(url, &nonce, self.kid.as_deref(), &body)
                .map_err(transport)?;
            let r = self
                .http
                .request("POST", url, Some("application/jose+json"), jws.as_bytes())
                .map_err(transport)?;
            self.nonce = r.header("replay-nonce").map(str::to_string);
            if r.status < 400 {
                return Ok(r);
            }
            let problem: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let kind = problem["type"].as_str().unwrap_or("").to_string();
            if kind == "urn:ietf:params:acme:error:badNonce" && tries < NONCE_RETRIES {
                tries += 1;
                continue;
            }
            return Err(AcmeError::Problem {
                status: r.status,
                kind,
                detail: problem["detail"].as_str().unwrap_or("").to_string(),
                retry_after: retry_after(&r),
            });
        }
    }

    /// Find or create the account of the key (a key the CA knows gets its account back).
    pub fn account(&mut self, email: Option<&str>) -> Result<(), AcmeError> {
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(e) = email {
            payload["contact"] = json!([format!("mailto:{e}")]);
        }
        let url = self.dir.new_account.clone();
        let r = self.post(&url, Some(&payload))?;
        self.kid = Some(
            r.header("location")
                .ok_or_else(|| transport("newAccount gave no Location"))?
                .to_string(),
        );
        Ok(())
    }

    /// Order a certificate for `name`; returns the order's URL and its first authorization's
    /// challenge of `kind` (none when the CA already considers the name validated).
    pub fn order(
        &mut self,
        name: &str,
        kind: &str,
    ) -> Result<(String, Value, Option<Challenge>), AcmeError> {
        let url = self.dir.new_order.clone();
        let payload = json!({ "identifiers": [{ "type": "dns", "value": name }] });
        let r = self.post(&url, Some(&payload))?;
        let order_url = r
            .header("location")
            .ok_or_else(|| transport("newOrder gave no Location"))?
            .to_string();
        let order = json_body(&r)?;
        let authz_url = order["authorizations"][0]
            .as_str()
            .ok_or_else(|| transport("the order lists no authorization"))?
            .to_string();
        let authz = json_body(&self.post(&authz_url, None)?)?;
        if authz["status"] == "valid" {
            return Ok((order_url, order, None));
        }
        let challenge = authz["challenges"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .ok_or_else(|| {
                AcmeError::Order(format!("the CA offers no {kind} challenge for {name}"))
            })?;
        Ok((
            order_url,
            order,
            Some(Challenge {
                url: text(challenge, "url")?,
                token: text(challenge, "token")?,
            }),
        ))
    }

    /// Tell the CA the challenge is ready, then wait for the order to be ready for its CSR.
    pub fn validate(&mut self, challenge: &Challenge, order_url: &str) -> Result<Value, AcmeError> {
        self.post(&challenge.url, Some(&json!({})))?;
        self.wait(order_url, &["ready", "valid"])
    }

    /// Send the CSR (DER) and download the certificate chain (PEM).
    pub fn finalize(
        &mut self,
        order: &Value,
        order_url: &str,
        csr_der: &[u8],
    ) -> Result<String, AcmeError> {
        let order = if order["status"] == "valid" {
            order.clone()
        } else {
            let url = text(order, "finalize")?;
            self.post(&url, Some(&json!({ "csr": super::jose::b64url(csr_der) })))?;
            self.wait(order_url, &["valid"])?
        };
        let cert_url = text(&order, "certificate")?;
        let r = self.post(&cert_url, None)?;
        String::from_utf8(r.body).map_err(|_| transport("the certificate is not PEM text"))
    }

    /// Poll `url` (an order) until its status is one of `want`; `invalid` ends it with the
    /// CA's reason.
    fn wait(&mut self, url: &str, want: &[&str]) -> Result<Value, AcmeError> {
        let deadline = Instant::now() + ORDER_DEADLINE;
        loop {
            let r = self.post(url, None)?;
            let pause = retry_after(&r)
                .unwrap_or(POLL_EVERY)
                .min(Duration::from_secs(10));
            let v = json_body(&r)?;
            let status = v["status"].as_str().unwrap_or("");
            if want.contains(&status) {
                return Ok(v);
            }
            if status == "invalid" {
                return Err(AcmeError::Order(self.why_invalid(&v)));
            }
            if Instant::now() + pause > deadline {
                return Err(AcmeError::Order(format!(
                    "the order is still {status} after {} s",
                    ORDER_DEADLINE.as_secs()
                )));
            }
            std::thread::sleep(pause);
        }
    }

    /// The CA's reason for an invalid order: its error, or its authorization's challenge's.
    fn why_invalid(&mut self, order: &Value) -> String {
        if let Some(d) = order["error"]["detail"].as_str() {
            return format!("order invalid: {d}");
        }
        let Some(authz_url) = order["authorizations"][0].as_str().map(str::to_string) else {
            return "order invalid".to_string();
        };
        match self.post(&authz_url, None).and_then(|r| json_body(&r)) {
            Ok(a) => a["challenges"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|c| c["error"]["detail"].as_str())
                .map_or("authorization invalid".to_string(), |d| {
                    format!("authorization invalid: {d}")
                }),
            Err(e) => format!("order invalid ({e})"),
        }
    }
}
