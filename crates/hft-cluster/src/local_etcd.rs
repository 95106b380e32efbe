//! A local etcd cluster on loopback (Debian's `etcd-server`): what tests, benchmarks and
//! a developer's single-machine cluster start, on free ports, in a directory of their
//! own. Every member is killed and the directory removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running local etcd.
pub struct LocalEtcd {
    members: Vec<Option<Child>>,
    /// Client URL of each member.
    pub clients: Vec<String>,
    dir: PathBuf,
    bin: PathBuf,
    peers: Vec<String>,
}

/// Whether `bin` runs as etcd.
pub fn available(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `n` loopback ports free right now (the OS picks them; they are released before
/// use, so start what binds them promptly).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let ls = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    ls.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl LocalEtcd {
    /// Starts `n` members of etcd `bin` with their data (and logs) under `dir`.
    pub fn start(bin: &Path, dir: &Path, n: usize) -> std::io::Result<Self> {
        Self::start_on(bin, dir, n, "127.0.0.1")
    }

    /// [`LocalEtcd::start`] listening on address `host` (one of this machine's) instead
    /// of loopback: what peers in other network namespaces reach.
    pub fn start_on(bin: &Path, dir: &Path, n: usize, host: &str) -> std::io::Result<Self> {
        if !available(bin) {
            return Err(std::io::Error::other(format!(
                "etcd not found at {}: install Debian's etcd-server (`apt-get install \
                 etcd-server`) or name the binary",
                bin.display()
            )));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(2 * n)?;
        let clients: Vec<String> = ports[..n]
            .iter()
            .map(|p| format!("http://{host}:{p}"))
            .collect();
        let peers: Vec<String> = ports[n..]
            .iter()
            .map(|p| format!("http://{host}:{p}"))
            .collect();
        let mut etcd = Self {
            members: (0..n).map(|_| None).collect(),
            clients,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            peers,
        };
        for i in 0..n {
            etcd.restart(i)?;
        }
        Ok(etcd)
    }

    /// (Re)starts member `i` from its data directory (a member that was killed rejoins
    /// with what it had).
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        if self.members.get(i).is_none_or(Option::is_some) {
            return Ok(());
        }
        let (dir, clients, peers) = (&self.dir, &self.clients, &self.peers);
        let initial: Vec<String> = (0..peers.len())
            .map(|k| format!("e{k}={}", peers[k]))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("etcd-{i}.log")))?;
        let child = Command::new(&self.bin)
            .args([
                "--name",
                &format!("e{i}"),
                "--data-dir",
                &dir.join(format!("etcd-{i}")).to_string_lossy(),
                "--listen-client-urls",
                &clients[i],
                "--advertise-client-urls",
                &clients[i],
                "--listen-peer-urls",
                &peers[i],
                "--initial-advertise-peer-urls",
                &peers[i],
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "hft-local",
                // Loopback members: a leader election takes a quarter second, not
                // etcd's default one to two, so it stays well inside the 2 s node leases
                // of the tests (a production etcd needs leases several times its
                // election timeout; see docs/cluster.md).
                "--heartbeat-interval",
                "25",
                "--election-timeout",
                "250",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.members[i] = Some(child);
        Ok(())
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members.get_mut(i).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the members log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
