//! `--demo`: one `goround-dummy` child per demo port, so a user can watch the balancing,
//! kill one backend and restart it.

use goround_mio::config::DEMO_PORTS;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running demo backends; dropping this stops them.
pub struct Demo {
    /// One child per port.
    children: Vec<Child>,
}

/// The goround-dummy binary next to the running goround-mio.
fn dummy_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let path = exe.with_file_name("goround-dummy");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found (build it with `cargo build --release`)",
            path.display()
        ))
    }
}

/// Start the dummies, wait until each accepts, and print their PIDs.
pub fn start() -> Result<Demo, String> {
    let path = dummy_path()?;
    let mut demo = Demo {
        children: Vec::new(),
    };
    for port in DEMO_PORTS {
        let mut cmd = Command::new(&path);
        cmd.arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours;
        // it makes the child get SIGTERM if the proxy dies without cleaning up.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        demo.children.push(child);
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if !line.starts_with("listening on") {
            return Err(format!(
                "goround-dummy on port {port} did not start (is the port taken?)"
            ));
        }
        println!("demo: goround-dummy on 127.0.0.1:{port}, pid {pid}");
    }
    println!(
        "demo: try `for i in 1 2 3 4; do curl -s localhost:8000; done`, then `kill <pid>` one backend;\n\
         demo: restart it with `{} --port <port> &` and it rejoins at the next health sweep",
        path.display()
    );
    Ok(demo)
}

impl Drop for Demo {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SAFETY: kill(2) with a pid we spawned; at worst it is gone already (ESRCH).
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}
