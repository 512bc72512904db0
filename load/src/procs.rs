//! Child processes (emulator, gateway, nginx) and what /proc says about them.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub addr: String,
    child: Child,
}

/// The child gets SIGTERM when the harness dies, however it dies (no orphaned servers).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: only async-signal-safe prctl between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns a command that prints `<announce> http://ADDR` on stdout, and waits for that line.
    /// stdout and stderr are written to `<logdir>/<name>.{out,err}`.
    pub fn spawn_announcing(
        name: &str,
        mut cmd: Command,
        announce: &str,
        logdir: &Path,
    ) -> anyhow::Result<Proc> {
        let err = std::fs::File::create(logdir.join(format!("{name}.err")))?;
        let mut out = std::fs::File::create(logdir.join(format!("{name}.out")))?;
        die_with_parent(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let announce = announce.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                let _ = writeln!(out, "{line}");
                if !sent && let Some(rest) = line.strip_prefix(&announce) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
            }
        });
        let mut proc = Proc {
            name: name.to_string(),
            addr: String::new(),
            child,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => {
                proc.addr = addr.trim_end_matches('/').to_string();
                Ok(proc)
            }
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                bail!(
                    "{name} did not announce its address (exit: {status:?}); see {}",
                    logdir.join(format!("{name}.err")).display()
                )
            }
        }
    }

    /// Spawns a command that announces nothing, then waits for `addr` to accept connections.
    pub fn spawn_listening(
        name: &str,
        mut cmd: Command,
        addr: &str,
        logdir: &Path,
    ) -> anyhow::Result<Proc> {
        let err = std::fs::File::create(logdir.join(format!("{name}.err")))?;
        let out = std::fs::File::create(logdir.join(format!("{name}.out")))?;
        die_with_parent(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let mut proc = Proc {
            name: name.to_string(),
            addr: format!("http://{addr}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(proc);
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                bail!(
                    "{name} exited ({status}); see {}",
                    logdir.join(format!("{name}.err")).display()
                );
            }
            if Instant::now() > deadline {
                bail!("{name} is not listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port (bound then released; a tiny race is accepted).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of one process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 0; utime and stime are fields 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// The process and its direct children (nginx: master and workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let ppid = stat[close + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

/// Total CPU seconds of a set of processes.
pub fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p)).sum()
}

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Sum of a status field over processes, in MB.
pub fn mem_mb(pids: &[u32], field: &str) -> f64 {
    pids.iter()
        .filter_map(|p| status_kb(*p, field))
        .sum::<u64>() as f64
        / 1024.0
}

/// Busy CPU seconds of the whole machine (all cores) from /proc/stat.
pub fn system_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user)
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy as f64 / clk_tck()
}
