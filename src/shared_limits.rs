//! Per-client rate counts shared between instances through Redis (`[client_limits] shared`).
//!
//! The request path never talks to Redis: each instance decides from its own limiter, which
//! counts the requests it allowed per client since the last exchange. Every
//! [`SYNC_INTERVAL`] this thread takes those counts and sends them, one script call per batch
//! of up to [`BATCH`] clients, to Redis, which adds them to the fleet's theoretical arrival
//! time (TAT, Unix µs) per client and answers with it; the thread merges the answer back into
//! the limiter. Every request allowed anywhere thus lands in the fleet's TAT, and an instance's
//! view is at most one interval old, so the fleet lets through at most what one limiter would,
//! plus what the other instances allowed in one interval, plus each one's burst at the very
//! start (before its first exchange about that client).
//!
//! Redis down, slow or refusing: the limits stay per instance (fail open to the local limiter),
//! the first failure is logged once, `goround_shared_limits_up` drops to 0, and the thread
//! reconnects with a backoff doubling from [`SYNC_INTERVAL`] to [`BACKOFF_MAX`]; counts taken
//! meanwhile are dropped (they were enforced locally). Connection limits stay per instance.
//!
//! Keys: `goround:rate:<limiter>:<client>`, `<limiter>` being `all` for `[client_limits]` and
//! `pool:<name>` for a pool's own; `<client>` an IPv4 address or an IPv6 /64. Each expires
//! a second after its TAT is past (a past TAT means nothing, but instances' clocks differ a
//! little), so Redis holds only the clients of the last moments.

use crate::limits::{ClientKey, Limiter};
use crate::state::Shared;
use crate::text::redacted;
use log::{debug, info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time between two exchanges with Redis.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// The most clients in one script call.
pub const BATCH: usize = 500;
/// The longest wait between two reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Connect, read and write timeout of the Redis connection: a slow Redis must not hold the
/// exchange (and so the fleet's view) for long.
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// With nothing to send for this long, a PING checks that Redis is still there (so the metric
/// tells the truth while traffic is quiet).
const PING_AFTER: Duration = Duration::from_secs(1);
/// Prefix of every key.
const KEY_PREFIX: &str = "goround:rate";

/// KEYS: one per client. ARGV[1]: now (Unix µs); ARGV[2]: the emission interval T (µs, may
/// be fractional); ARGV[2 + i]: the requests allowed for KEYS[i] since the last exchange.
/// Returns each client's new TAT (Unix µs, as a string: Lua numbers are doubles, exact up to
/// 2^53, far beyond any Unix µs).
const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[2 + i]) * t
  local ttl = math.floor((tat - now) / 1000) + 1000
  local text = string.format('%.0f', tat)
  redis.call('SET', key, text, 'PX', ttl)
  out[i] = text
end
return out
";

/// Start the exchange thread (it idles while no `shared` is configured; a reload may add one).
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shared-limits".into())
        .spawn(move || Exchanger::new(shared).run())
        .map(|_| ())
}

/// The thread's state.
struct Exchanger {
    shared: Arc<Shared>,
    script: redis::Script,
    /// The URL connected to (or being tried).
    url: Option<String>,
    conn: Option<redis::Connection>,
    /// No connection attempt before this.
    retry_at: Instant,
    backoff: Duration,
    /// A failure has been logged and no success since: later ones go to debug.
    down_logged: bool,
    /// The last successful exchange with Redis.
    last_contact: Instant,
    /// Reused buffers.
    pending: Vec<(ClientKey, u32)>,
}

impl Exchanger {
    fn new(shared: Arc<Shared>) -> Exchanger {
        Exchanger {
            shared,
            script: redis::Script::new(SCRIPT),
            url: None,
            conn: None,
            retry_at: Instant::now(),
            backoff: SYNC_INTERVAL,
            down_logged: false,
            last_contact: Instant::now(),
            pending: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut next = Instant::now();
        while !self.shared.shutdown.load(Ordering::Acquire) {
            next += SYNC_INTERVAL;
            self.turn();
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }

    /// One exchange: every shared limiter's counts out, the fleet's TATs back in.
    fn turn(&mut self) {
        let (snap, _) = self.shared.current();
        let url = snap.cfg.client_limits.shared.clone();
        if url != self.url {
            self.conn = None;
            self.url = url;
            self.retry_at = Instant::now();
            self.backoff = SYNC_INTERVAL;
            self.down_logged = false;
        }
        let Some(url) = self.url.clone() else {
            self.shared.shared_limits.up.store(false, Ordering::Relaxed);
            return;
        };
        let mut limiters: Vec<(String, &Arc<Limiter>)> = Vec::new();
        if let Some(l) = &snap.limiter {
            limiters.push(("all".to_string(), l));
        }
        for (pool, l) in snap.cfg.pools.iter().zip(&snap.pool_limiters) {
            if let Some(l) = l {
                limiters.push((format!("pool:{}", pool.name), l));
            }
        }
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            self.connect(&url);
        }
        for (name, limiter) in limiters {
            if !limiter.is_shared() {
                continue;
            }
            self.pending.clear();
            limiter.take_pending(&mut self.pending);
            if self.pending.is_empty() || self.conn.is_none() {
                // Down: the counts were enforced here; they are dropped, not queued.
                continue;
            }
            let pending = std::mem::take(&mut self.pending);
            for batch in pending.chunks(BATCH) {
                if let Err(e) = self.send(&name, limiter, batch) {
                    self.failed(&url, &e);
                    break;
                }
            }
            self.pending = pending;
        }
        if self.last_contact.elapsed() >= PING_AFTER {
            if let Some(conn) = self.conn.as_mut() {
                match redis::cmd("PING").query::<String>(conn) {
                    Ok(_) => self.last_contact = Instant::now(),
                    Err(e) => self.failed(&url, &e),
                }
            }
        }
    }

    /// Connect (and check with a PING) to `url`.
    fn connect(&mut self, url: &str) {
        let result = redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(IO_TIMEOUT))
            .and_then(|mut c| {
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                c.set_write_timeout(Some(IO_TIMEOUT))?;
                redis::cmd("PING").query::<String>(&mut c)?;
                Ok(c)
            });
        match result {
            Ok(c) => {
                self.conn = Some(c);
                self.last_contact = Instant::now();
                self.backoff = SYNC_INTERVAL;
                self.shared.shared_limits.up.store(true, Ordering::Relaxed);
                if self.down_logged {
                    info!(
                        "shared limits: Redis at {} is back, counts are shared again",
                        redacted(url)
                    );
                } else {
                    info!(
                        "shared limits: exchanging counts with Redis at {}",
                        redacted(url)
                    );
                }
                self.down_logged = false;
            }
            Err(e) => self.failed(url, &e),
        }
    }

    /// Send one batch of `limiter`'s counts and merge the fleet's answer.
    fn send(
        &mut self,
        name: &str,
        limiter: &Limiter,
        batch: &[(ClientKey, u32)],
    ) -> redis::RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        // The limiter's clock is monotonic ns since the process started; Redis's is Unix µs,
        // common to the fleet.
        let (mono, unix_ns) = (
            crate::clock::Tick::now().ns(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        let offset = i128::from(unix_ns) - i128::from(mono);
        let mut call = self.script.prepare_invoke();
        call.arg(unix_ns / 1000)
            .arg(limiter.interval_ns() as f64 / 1000.0);
        for (key, count) in batch {
            call.key(format!("{KEY_PREFIX}:{name}:{key}")).arg(*count);
        }
        let tats: Vec<String> = call.invoke(conn)?;
        self.last_contact = Instant::now();
        let status = &self.shared.shared_limits;
        status.syncs_ok.fetch_add(1, Ordering::Relaxed);
        status
            .clients_sent
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for ((key, _), tat) in batch.iter().zip(&tats) {
            let Ok(tat_us) = tat.parse::<u64>() else {
                continue;
            };
            let mono_tat = i128::from(tat_us) * 1000 - offset;
            if mono_tat > 0 {
                limiter.merge_fleet(*key, u64::try_from(mono_tat).unwrap_or(u64::MAX));
            }
        }
        Ok(())
    }

    /// An exchange or a connection attempt failed: per-instance limits until a reconnection.
    fn failed(&mut self, url: &str, e: &redis::RedisError) {
        self.conn = None;
        let status = &self.shared.shared_limits;
        status.up.store(false, Ordering::Relaxed);
        status.syncs_failed.fetch_add(1, Ordering::Relaxed);
        if self.down_logged {
            debug!("shared limits: Redis at {}: {e}", redacted(url));
        } else {
            warn!(
                "shared limits: Redis at {} failed ({e}); limits are per instance until it is back",
                redacted(url)
            );
            self.down_logged = true;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}
