//! Network namespaces for `hft chaos run`: every node in a namespace of its own, wired
//! to two bridges in the runner's namespace, so that a partition is a link going down
//! rather than a relay pretending.
//!
//! The runner moves itself into a new network and mount namespace first (before it
//! starts any thread). Its bridges, addresses, etcd, venue and the nodes' tmpfs WAL
//! directories therefore exist only there and vanish with the run; nothing is added to
//! the host's network. Each node namespace has two links:
//! - `eth0` on the cluster network (etcd, ledger peers, control channel, admin API),
//!   whose bridge end a partition takes down;
//! - `eth1` on the market-access network (the venue), which partitions leave up, as a
//!   trading firm's exchange lines are separate from its cluster network.

use std::ffi::CString;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

/// Cluster network: the runner is `.1` (etcd listens there), node `i` is `.10+i`.
const CLUSTER_NET: &str = "10.91.0";
/// Market-access network: the venue at `.1`, node `i` at `.10+i`.
const VENUE_NET: &str = "10.92.0";

/// Why `Netns::enter` failed, and whether the process had already left the host's
/// namespaces (then it cannot fall back to loopback: its loopback is a new, empty one).
pub(crate) struct Entered {
    /// The process is in new namespaces.
    pub(crate) moved: bool,
    /// What failed.
    pub(crate) error: anyhow::Error,
}

/// The namespaces of one run, and the tmpfs mounts made in it; all removed on drop.
pub(crate) struct Netns {
    prefix: String,
    nodes: Vec<u64>,
    mounts: Vec<std::path::PathBuf>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (Debian: iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn cstr(s: &str) -> anyhow::Result<CString> {
    CString::new(s).context("a path with a NUL byte")
}

impl Netns {
    /// Moves this process into a network and mount namespace of its own and builds the
    /// two bridges. Must run before the process starts a thread (the namespaces are
    /// per thread until then). Fails before changing anything where namespaces cannot
    /// be made (no root, no `ip`); a failure after the move (no CAP_SYS_ADMIN, say)
    /// leaves the process in new, empty namespaces, so the caller must not go on.
    pub(crate) fn enter() -> Result<Self, Entered> {
        let mut moved = false;
        Self::try_enter(&mut moved).map_err(|error| Entered { moved, error })
    }

    fn try_enter(moved: &mut bool) -> anyhow::Result<Self> {
        // Everything that can fail without changing anything goes first.
        ip(&["-V"])?;
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("namespaces need root");
        }
        remove_stale();
        // SAFETY: unshare(2) with namespace flags only; the caller has no other thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) } != 0 {
            bail!(
                "cannot create namespaces: {}",
                std::io::Error::last_os_error()
            );
        }
        *moved = true;
        // Mounts made from here on (tmpfs WAL directories, the node namespaces' bind
        // mounts) stay in this mount namespace.
        let root = cstr("/")?;
        // SAFETY: mount(2) changing propagation only; every pointer is a valid C string
        // or null.
        if unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        } != 0
        {
            bail!(
                "cannot make mounts private: {}",
                std::io::Error::last_os_error()
            );
        }
        ip(&["link", "set", "lo", "up"])?;
        for (br, net) in [("brc", CLUSTER_NET), ("brv", VENUE_NET)] {
            ip(&["link", "add", br, "type", "bridge"])?;
            ip(&["addr", "add", &format!("{net}.1/24"), "dev", br])?;
            ip(&["link", "set", br, "up"])?;
        }
        Ok(Self {
            prefix: format!("hftc{}", std::process::id()),
            nodes: Vec::new(),
            mounts: Vec::new(),
        })
    }

    fn name(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    /// Creates node `id`'s namespace with its two links.
    pub(crate) fn add_node(&mut self, id: u64) -> anyhow::Result<()> {
        let ns = self.name(id);
        ip(&["netns", "add", &ns])?;
        self.nodes.push(id);
        for (k, (kind, br, net)) in [("c", "brc", CLUSTER_NET), ("v", "brv", VENUE_NET)]
            .into_iter()
            .enumerate()
        {
            let (host, peer, inner) = (
                format!("{kind}{id}"),
                format!("{kind}{id}p"),
                format!("eth{k}"),
            );
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &ns])?;
            ip(&["link", "set", &host, "master", br, "up"])?;
            ip(&["-n", &ns, "link", "set", &peer, "name", &inner])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{net}.{}/24", 10 + id),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"])
    }

    /// Node `id`'s address on the cluster network.
    pub(crate) fn cluster_ip(id: u64) -> String {
        format!("{CLUSTER_NET}.{}", 10 + id)
    }

    /// The runner's address on the cluster network (etcd listens there).
    pub(crate) fn hub_ip() -> String {
        format!("{CLUSTER_NET}.1")
    }

    /// The venue's address on the market-access network.
    pub(crate) fn venue_ip() -> String {
        format!("{VENUE_NET}.1")
    }

    /// Takes node `id`'s cluster link down (or up again): its traffic to etcd, the
    /// ledger peers and the other nodes is dropped; its venue session stays.
    pub(crate) fn cut(&self, id: u64, cut: bool) -> anyhow::Result<()> {
        ip(&[
            "link",
            "set",
            &format!("c{id}"),
            if cut { "down" } else { "up" },
        ])
    }

    /// A command that runs `exe` inside node `id`'s namespace (`ip netns exec` execs it,
    /// so the child's pid is the program's).
    pub(crate) fn command(&self, id: u64, exe: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name(id)]).arg(exe);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for &id in &self.nodes {
            let _ = ip(&["netns", "del", &self.name(id)]);
        }
        for m in &self.mounts {
            if let Ok(c) = cstr(&m.to_string_lossy()) {
                // SAFETY: umount2(2) of a mount this run made; a valid C string.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

impl Netns {
    /// A tmpfs of `mib` MiB on `dir` (see `mount_tmpfs`), unmounted on drop.
    pub(crate) fn tmpfs(&mut self, dir: &Path, mib: u64) -> anyhow::Result<()> {
        mount_tmpfs(dir, mib)?;
        self.mounts.push(dir.to_owned());
        Ok(())
    }
}

/// Removes the names runs left behind when they were killed (SIGKILL skips `Drop`):
/// `/run/netns/hftc<pid>-n<id>` of a pid that is gone. Outside the run's mount
/// namespace such a name is an empty file, its namespace long freed.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("hftc")
            .and_then(|r| r.split_once("-n"))
            .and_then(|(p, _)| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A tmpfs of `mib` MiB mounted on `dir` (created if missing), in this process's mount
/// namespace: a node's WAL directory that the chaos suite can fill.
fn mount_tmpfs(dir: &Path, mib: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = cstr(&dir.to_string_lossy())?;
    let (fs, opts) = (cstr("tmpfs")?, cstr(&format!("size={mib}m"))?);
    // SAFETY: mount(2) with valid C strings; the target directory exists.
    if unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    } != 0
    {
        bail!(
            "cannot mount a tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Fills the filesystem of `dir` with a file `dir/.filler` until a write fails for want
/// of space; returns the bytes written. Removing the file frees them.
pub(crate) fn fill_disk(dir: &Path) -> anyhow::Result<u64> {
    use std::io::Write;
    let path = dir.join(".filler");
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
        }
    }
    Ok(written)
}

/// Frees what `fill_disk` took.
pub(crate) fn free_disk(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(".filler"));
}
