//! The ACME storage directory: the account key, each name's certificate chain and key, its
//! retry schedule, and the lock that lets one instance of a fleet order at a time.
//!
//! ```text
//! STORAGE/account.key        the account's key (PKCS#8 PEM)
//! STORAGE/certs/NAME.crt     the chain, leaf first (PEM)
//! STORAGE/certs/NAME.key     its key (PKCS#8 PEM)
//! STORAGE/certs/NAME.retry   after a failed order: "UNIX_SECONDS FAILURES", the next try
//! STORAGE/lock               held while an order runs: "PID HOST"
//! ```
//! Every file is written 0600 under a temporary name and renamed into place, so that a reader
//! (another instance, a restart) never sees half a file.

use super::jose::AccountKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lock older than this is taken to be left by an instance that died mid-order (an order
/// takes at most two minutes).
pub const STALE_LOCK: Duration = Duration::from_secs(600);

/// The storage directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
}

/// The lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", path.display())
    })
}

impl Storage {
    /// The directory, made (0700) if it is not there.
    pub fn open(dir: &Path) -> Result<Storage, String> {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs)
            .map_err(|e| format!("{}: cannot create: {e}", certs.display()))?;
        for d in [dir, certs.as_path()] {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Storage {
            dir: dir.to_path_buf(),
        })
    }

    /// The account key: the stored one, or a new one stored now.
    pub fn account_key(&self) -> Result<AccountKey, String> {
        let path = self.dir.join("account.key");
        match std::fs::read(&path) {
            Ok(pem) => AccountKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = AccountKey::generate()?;
                write_private(&path, key.to_pem().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Where `name`'s chain and key are.
    pub fn cert_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        (
            certs.join(format!("{name}.crt")),
            certs.join(format!("{name}.key")),
        )
    }

    /// Keep `name`'s new chain and key (the key first: a reader that sees the new chain
    /// finds its key).
    pub fn save_cert(&self, name: &str, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        let (crt, key) = self.cert_paths(name);
        write_private(&key, key_pem.as_bytes())?;
        write_private(&crt, chain_pem.as_bytes())?;
        let _ = std::fs::remove_file(self.retry_path(name));
        Ok(())
    }

    fn retry_path(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.retry"))
    }

    /// The next try after failed orders, and how many failed in a row, as last kept (so that
    /// a restart does not order again at once).
    pub fn retry(&self, name: &str) -> Option<(i64, u32)> {
        let text = std::fs::read_to_string(self.retry_path(name)).ok()?;
        let mut parts = text.split_whitespace();
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// Keep the next try after a failed order.
    pub fn set_retry(&self, name: &str, at: i64, failures: u32) {
        let _ = write_private(
            &self.retry_path(name),
            format!("{at} {failures}\n").as_bytes(),
        );
    }

    /// Take the lock, unless another instance holds it (a lock older than `STALE_LOCK` is
    /// broken).
    pub fn lock(&self) -> Result<Option<Lock>, String> {
        let path = self.dir.join("lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let host =
                        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    let _ = writeln!(f, "{} {}", std::process::id(), host.trim());
                    return Ok(Some(Lock { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if age < STALE_LOCK {
                        return Ok(None);
                    }
                    log::warn!(
                        "ACME: {} is {} s old: taken to be left by a stopped instance, removed",
                        path.display(),
                        age.as_secs()
                    );
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(format!("{}: cannot create: {e}", path.display())),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_the_lock_is_exclusive_and_a_stale_one_is_broken() {
        let dir = std::env::temp_dir().join(format!("goround-acme-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Storage::open(&dir).unwrap();
        let key = s.account_key().unwrap();
        assert_eq!(
            s.account_key().unwrap().jwk(),
            key.jwk(),
            "the stored key is reused"
        );
        let mode = std::fs::metadata(dir.join("account.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        s.set_retry("a.example", 1234, 3);
        assert_eq!(s.retry("a.example"), Some((1234, 3)));
        s.save_cert("a.example", "chain", "key").unwrap();
        assert_eq!(s.retry("a.example"), None, "a certificate ends the retries");
        let (crt, k) = s.cert_paths("a.example");
        assert_eq!(std::fs::read_to_string(crt).unwrap(), "chain");
        assert_eq!(
            std::fs::metadata(k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let held = s.lock().unwrap().expect("free");
        assert!(s.lock().unwrap().is_none(), "held by another");
        drop(held);
        let again = s.lock().unwrap().expect("free again");
        std::mem::forget(again);
        let old = SystemTime::now() - STALE_LOCK - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(dir.join("lock"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(s.lock().unwrap().is_some(), "a stale lock is broken");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
