//! The signal thread: SIGHUP reloads, SIGUSR2 upgrades, SIGUSR1 reopens the access log, the
//! first SIGTERM or SIGINT stops gracefully and the second at once.

use super::reload::reload;
use super::systemd;
use super::upgrade;
use super::Control;
use log::{info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Control {
    /// Handle signals until the process ends.
    pub fn run_signals(self: Arc<Self>, mut signals: signal_hook::iterator::Signals) {
        use signal_hook::consts::{SIGHUP, SIGUSR1, SIGUSR2};
        let mut stops = 0;
        for sig in signals.forever() {
            match sig {
                SIGUSR1 => {
                    info!("signal {sig}: reopening the access log");
                    self.reopen_log.store(true, Ordering::Release);
                }
                SIGHUP => reload(&self),
                SIGUSR2 => upgrade::start(&self),
                _ => {
                    stops += 1;
                    if stops == 1 {
                        // The state first, then the line: whoever reads the line (an operator,
                        // a test) finds /healthz already at 503.
                        self.begin_shutdown();
                        info!("signal {sig}: shutting down gracefully (again to stop at once)");
                        systemd::notify("STOPPING=1");
                    } else {
                        warn!("signal {sig} again: stopping now");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
}
