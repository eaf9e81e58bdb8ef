//! Session tickets (RFC 5077, and TLS 1.3's tickets): one key set for the whole process, so
//! that a client resumes on any worker, kept across a reload and handed to the new process of
//! an upgrade, so that it resumes there too. With `ticket_key_file` the keys come from that
//! file, and a fleet sharing the file resumes each other's sessions.
//!
//! A key is 80 bytes, as nginx's `ssl_session_ticket_key` file (`openssl rand 80`): a 16-byte
//! name, then key material; the ticket cipher is AES-256-GCM under the material's last 32
//! bytes. A ticket is `name ‖ nonce ‖ sealed state`, so that the key that made it is found by
//! name. Without a file, keys are made at random and rotated every [`ROTATE_EVERY`]; the
//! previous one still opens tickets until it is rotated out, so a ticket lives up to twice that.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Bytes of one key, as nginx's.
pub const KEY_LEN: usize = 80;
/// How often made-up keys are replaced.
pub const ROTATE_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Most keys a file may hold (the first makes tickets, the others only open them).
const MAX_KEYS: usize = 16;

/// One ticket key.
struct Key {
    /// The 80 bytes, kept to hand them over.
    raw: [u8; KEY_LEN],
    aead: LessSafeKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("Key")
            .field("name", &&self.raw[..16])
            .finish()
    }
}

impl Key {
    fn new(raw: [u8; KEY_LEN]) -> Option<Key> {
        let unbound = UnboundKey::new(&AES_256_GCM, &raw[KEY_LEN - 32..]).ok()?;
        Some(Key {
            raw,
            aead: LessSafeKey::new(unbound),
        })
    }

    fn name(&self) -> &[u8] {
        &self.raw[..16]
    }

    fn random(rng: &SystemRandom) -> Option<Key> {
        let mut raw = [0u8; KEY_LEN];
        rng.fill(&mut raw).ok()?;
        Key::new(raw)
    }
}

/// The keys and when the first was made.
#[derive(Debug)]
struct Keys {
    /// The first makes tickets; all open them.
    keys: Vec<Key>,
    /// When the first was made (made-up keys only).
    made: Instant,
    /// From a file: never rotated here.
    from_file: bool,
}

/// The process's ticket keys.
#[derive(Debug)]
pub struct Tickets {
    keys: RwLock<Keys>,
    rng: SystemRandom,
}

impl Tickets {
    /// Keys made at random (or `inherited` from the process this one upgrades, 80 bytes each).
    pub fn random(inherited: Option<&[u8]>) -> Result<Tickets, String> {
        let rng = SystemRandom::new();
        let keys = match inherited.map(parse) {
            Some(Ok(keys)) => keys,
            Some(Err(e)) => return Err(format!("the ticket keys handed over: {e}")),
            None => vec![Key::random(&rng).ok_or("cannot make a ticket key")?],
        };
        Ok(Tickets {
            keys: RwLock::new(Keys {
                keys,
                made: Instant::now(),
                from_file: false,
            }),
            rng,
        })
    }

    /// Keys from `bytes` (a `ticket_key_file`: one or more keys of 80 bytes).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Tickets, String> {
        Ok(Tickets {
            keys: RwLock::new(Keys {
                keys: parse(bytes)?,
                made: Instant::now(),
                from_file: true,
            }),
            rng: SystemRandom::new(),
        })
    }

    /// Use the keys of `bytes` (a ticket key file read again by a reload).
    pub fn replace_from_file(&self, bytes: &[u8]) -> Result<(), String> {
        let keys = parse(bytes)?;
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        k.keys = keys;
        k.from_file = true;
        Ok(())
    }

    /// `ticket_key_file` is no longer set (a reload): keys made here from now on, rotated;
    /// the file's keys stay to open the tickets they made until the next rotation.
    pub fn forget_file(&self) {
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if !k.from_file {
            return;
        }
        if let Some(fresh) = Key::random(&self.rng) {
            k.keys.insert(0, fresh);
            k.keys.truncate(2);
            k.made = Instant::now();
            k.from_file = false;
        }
    }

    /// Every key, 80 bytes each, the one making tickets first: what an upgrade hands over.
    pub fn export(&self) -> Vec<u8> {
        let k = self.keys.read().unwrap_or_else(|p| p.into_inner());
        k.keys.iter().flat_map(|key| key.raw).collect()
    }

    /// Rotate made-up keys that are due (the previous one is kept to open tickets).
    fn rotate_if_due(&self) {
        let due = {
            let k = self.keys.read().unwrap_or_else(|p| p.into_inner());
            !k.from_file && k.made.elapsed() >= ROTATE_EVERY
        };
        if !due {
            return;
        }
        let Some(fresh) = Key::random(&self.rng) else {
            return;
        };
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if k.from_file || k.made.elapsed() < ROTATE_EVERY {
            return;
        }
        k.keys.insert(0, fresh);
        k.keys.truncate(2);
        k.made = Instant::now();
    }
}

/// The keys of a key file's bytes.
fn parse(bytes: &[u8]) -> Result<Vec<Key>, String> {
    if bytes.is_empty() || bytes.len() % KEY_LEN != 0 {
        return Err(format!(
            "{} bytes: a ticket key file holds keys of {KEY_LEN} bytes (openssl rand 80)",
            bytes.len()
        ));
    }
    if bytes.len() / KEY_LEN > MAX_KEYS {
        return Err(format!("more than {MAX_KEYS} keys"));
    }
    bytes
        .chunks_exact(KEY_LEN)
        .map(|c| {
            let mut raw = [0u8; KEY_LEN];
            raw.copy_from_slice(c);
            Key::new(raw).ok_or_else(|| "unusable key".to_string())
        })
        .collect()
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        (2 * ROTATE_EVERY.as_secs()) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due();
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let k = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let key = k.keys.first()?;
        let mut out = Vec::with_capacity(16 + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(key.name());
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name()),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < 16 + NONCE_LEN + 16 {
            return None;
        }
        let (name, rest) = cipher.split_at(16);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let k = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let key = k.keys.iter().find(|key| key.name() == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(name), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_with_the_keys_that_made_it_and_only_them() {
        let a = Tickets::random(None).expect("keys");
        let t = a.encrypt(b"session state").expect("a ticket");
        assert_eq!(a.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        // Handed over (an upgrade): the new process opens it.
        let b = Tickets::random(Some(&a.export())).expect("keys");
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        // Another process's keys do not; nor does a ticket tampered with.
        let c = Tickets::random(None).expect("keys");
        assert_eq!(c.decrypt(&t), None);
        let mut bad = t.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(a.decrypt(&bad), None);
        assert_eq!(a.decrypt(&t[..20]), None);
    }

    #[test]
    fn a_key_file_holds_whole_keys_and_its_first_makes_tickets() {
        assert!(Tickets::from_file_bytes(&[7u8; 79]).is_err());
        assert!(Tickets::from_file_bytes(&[]).is_err());
        let two: Vec<u8> = [[1u8; KEY_LEN], [2u8; KEY_LEN]].concat();
        let fleet_a = Tickets::from_file_bytes(&two).expect("keys");
        let fleet_b = Tickets::from_file_bytes(&two).expect("keys");
        let t = fleet_a.encrypt(b"x").expect("a ticket");
        assert_eq!(&t[..16], &[1u8; 16], "made by the first key");
        assert_eq!(
            fleet_b.decrypt(&t).as_deref(),
            Some(&b"x"[..]),
            "a fleet shares them"
        );
        // The second key still opens tickets it made (a rotation by file).
        let old = Tickets::from_file_bytes(&[2u8; KEY_LEN]).expect("keys");
        let t2 = old.encrypt(b"y").expect("a ticket");
        assert_eq!(fleet_a.decrypt(&t2).as_deref(), Some(&b"y"[..]));
    }
}
