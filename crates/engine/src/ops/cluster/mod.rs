//! Clusters the xcluster way: N VMs from one kernel and one image, each writing to its own
//! copy-on-write overlay (qcow2 over the read-only image), told who it is on the kernel
//! command line (`reprovm.node=N`: hostname `vm00N`, an address on every network), on a
//! management path of its own (user-mode networking, SSH on 127.0.0.1:BASE+N) and on two
//! private L2 networks (net1, net2).
//!
//! The private networks need no privilege and never leave the machine: each is a hub in this
//! process, a UDP socket on 127.0.0.1 that forwards every Ethernet frame a node sends to every
//! other node of the run (QEMU's `-netdev dgram` with unicast addresses on loopback). A run's
//! hubs are its own (ports the kernel gives), so two clusters can never share a network.
//!
//! Lifecycle: a cluster lives in `out/cluster/BASE/` (BASE its SSH port base, so clusters on
//! other ports keep apart): consoles in `vmNNN.console.log`, overlays in `run-PID/` (or
//! `--persist DIR`), removed when the run ends; Ctrl-C, SIGTERM or
//! the timeout stop every QEMU; a QEMU also dies with this process (PR_SET_PDEATHSIG), and a
//! run killed outright leaves a `run-PID` directory that the next run removes.

use super::boot::{self, check_kernel, given, need, Accel, Target};
use crate::model::project::Project;
use crate::ops::context::RunContext;
use crate::steps::host_tools::HostTools;
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::progress;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod test;
pub use test::{cluster_test, ClusterReport};

/// The private networks every node is on, after eth0 (the management path).
pub(crate) const NETWORKS: [&str; 2] = ["net1", "net2"];
/// The most nodes a cluster has (addresses are `192.168.K.N` with N from 1).
pub(crate) const MAX_NODES: usize = 99;

/// What a cluster runs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// `Target::Image` (overlays over hd.img) or `Target::Initramfs` (no disk).
    pub target: Target,
    pub kernel: Option<PathBuf>,
    pub image: Option<PathBuf>,
    /// Node N's SSH is forwarded from 127.0.0.1:BASE+N.
    pub ssh_port_base: u16,
    pub ssh_key: Option<PathBuf>,
    pub memory: u32,
    pub accel: Accel,
    pub qemu: Option<PathBuf>,
    /// Keep the overlays in this directory (created; existing overlays are used again).
    pub persist: Option<PathBuf>,
    /// Extra kernel command line for every node.
    pub append: String,
}

/// The files a cluster boots, found before anything is fetched or started.
pub(crate) struct ClusterFiles {
    kernel: PathBuf,
    image: Option<PathBuf>,
    initrd: Option<PathBuf>,
}

impl ClusterOptions {
    /// The targets a cluster boots, named as `Target::VALUES` names them.
    pub const TARGETS: [(Target, &'static str, &'static str); 2] = [
        (Target::Image, "hd-image", "out/bzImage with an overlay over out/hd.img per node"),
        (Target::Initramfs, "initramfs", "out/bzImage with out/initramfs.cpio.gz, no disk"),
    ];

    /// Refuse what a cluster cannot do and find its files, before any work: the node count,
    /// the target, the architecture, and the kernel and image (or initramfs) it boots.
    pub(crate) fn check(&self, project: &Project) -> Result<ClusterFiles> {
        anyhow::ensure!(
            project.arch.is_default(),
            "clusters boot x86_64 images (q35 over vde/dgram networks); --arch {} boots one VM with `boot-test` or `run`",
            project.arch
        );
        if self.nodes == 0 || self.nodes > MAX_NODES {
            bail!("--nodes {}: 1 to {MAX_NODES}", self.nodes);
        }
        if self.memory < 32 {
            bail!("--memory {}: a node needs at least 32 MiB", self.memory);
        }
        if self.ssh_port_base == 0 || usize::from(self.ssh_port_base) + self.nodes > 65535 {
            bail!(
                "--ssh-port {}: node K's SSH is on it + K, so it must be 1 to {}",
                self.ssh_port_base,
                65535 - self.nodes
            );
        }
        if let Some(k) = &self.ssh_key {
            given("--ssh-key", k)?;
        }
        if let Some(q) = &self.qemu {
            given("--qemu", q)?;
        }
        let out = |f: &str| project.out.join(f);
        let (image, initrd) = match self.target {
            Target::Image => {
                let image = match &self.image {
                    Some(p) => given("--image", p)?,
                    None => need(out("hd.img"), "hd-image")?,
                };
                (Some(image), None)
            }
            Target::Initramfs => {
                if self.image.is_some() {
                    bail!("--image: `--target initramfs` boots no disk");
                }
                (None, Some(need(out("initramfs.cpio.gz"), "initramfs")?))
            }
            _ => bail!(
                "--target {}: a cluster boots `--target hd-image` (overlays over hd.img) or `--target initramfs` (no disk)",
                self.target.name()
            ),
        };
        let kernel = match &self.kernel {
            Some(p) => given("--kernel", p)?,
            None => need(out("bzImage"), "hd-image")?,
        };
        check_kernel(&kernel, project.arch, boot::Machine::Pc)?;
        Ok(ClusterFiles { kernel, image, initrd })
    }
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            target: Target::Image,
            kernel: None,
            image: None,
            ssh_port_base: 10022,
            ssh_key: None,
            memory: 256,
            accel: Accel::Auto,
            qemu: None,
            persist: None,
            append: String::new(),
        }
    }
}

/// One running VM.
pub(crate) struct Node {
    pub index: usize,
    pub name: String,
    pub ssh_port: u16,
    pub console: PathBuf,
    child: Child,
}

impl Node {
    /// The node's address on private network `net` (1 or 2).
    pub(crate) fn address(&self, net: usize) -> String {
        format!("192.168.{net}.{}", self.index)
    }

    /// Resident memory of its QEMU, in KiB (None once it has exited).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
    }
}

/// A private L2 network: a hub on 127.0.0.1 forwarding frames between the nodes' ports.
struct Hub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    fn start(nodes: Vec<SocketAddr>) -> Result<Hub> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding a network hub")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut frame = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut frame) else { continue };
                // Only the run's nodes are heard, and each frame goes to every other node.
                if !nodes.contains(&from) {
                    continue;
                }
                for to in nodes.iter().filter(|to| **to != from) {
                    let _ = socket.send_to(&frame[..n], to);
                }
            }
        });
        Ok(Hub { addr, stop, thread: Some(thread) })
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running cluster. Dropping it stops every QEMU, the hubs, and removes the overlays
/// (unless persisted).
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    hubs: Vec<Hub>,
    run_dir: Option<PathBuf>,
    pub started: Instant,
}

/// Set by SIGINT and SIGTERM while a cluster runs: the run stops and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM (the cluster is stopped and cleaned up, then the command fails).
fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A free UDP port on 127.0.0.1 (bound, then released for QEMU to bind).
fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// Remove `run-PID` directories of runs whose process is gone.
fn sweep_runs(dir: &Dir) -> Result<()> {
    for name in dir.names()? {
        let name = name.to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("run-").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            progress::say(&format!("removing out/cluster/{name} (left by a killed run)"));
            dir.remove_all(Path::new(&name))?;
        }
    }
    Ok(())
}

impl Cluster {
    /// Start every node; returns when their QEMUs run (not when they have booted).
    pub(crate) fn start(ctx: &RunContext, opts: &ClusterOptions) -> Result<Cluster> {
        let project = &ctx.project;
        let files = opts.check(project)?;
        let kernel = files.kernel.clone();
        let tools = HostTools::get(project, &ctx.fetcher)?;
        // The management ports must be free: refuse clearly rather than start half a cluster
        // (another cluster may be running on them).
        for i in 1..=opts.nodes {
            let port = opts.ssh_port_base.checked_add(i as u16).context("SSH port beyond 65535")?;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!(
                    "127.0.0.1:{port} (node {i}'s SSH) is in use, perhaps by another cluster: pass --ssh-port with {} free ports above it",
                    opts.nodes
                );
            }
        }
        catch_interrupts();
        let out = |f: &str| project.out.join(f);
        let home = out("cluster").join(opts.ssh_port_base.to_string());
        let cluster_dir = Dir::create(&home)?;
        sweep_runs(&cluster_dir)?;
        let (overlays, run_dir) = match &opts.persist {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let name = format!("run-{}", std::process::id());
                cluster_dir.remove_all(Path::new(&name))?;
                cluster_dir.create_dir_all(Path::new(&name))?;
                (home.join(&name), Some(home.join(&name)))
            }
        };
        let mut cluster =
            Cluster { nodes: Vec::new(), hubs: Vec::new(), run_dir, started: Instant::now() };
        // Every node's end of every network, then the hubs that join them.
        let ends: Vec<Vec<SocketAddr>> = (0..NETWORKS.len())
            .map(|_| (0..opts.nodes).map(|_| free_udp()).collect::<Result<Vec<_>>>())
            .collect::<Result<_>>()?;
        for e in &ends {
            cluster.hubs.push(Hub::start(e.clone())?);
        }
        let boot_opts = boot::BootOptions {
            target: opts.target,
            kernel: Some(kernel.clone()),
            image: opts.image.clone(),
            accel: opts.accel,
            qemu: opts.qemu.clone(),
            memory: opts.memory,
            ..Default::default()
        };
        let accel = boot_opts.accelerator(project, &tools)?;
        let (image, initrd) = (files.image, files.initrd);
        for i in 1..=opts.nodes {
            let name = format!("vm{i:03}");
            let console = home.join(format!("{name}.console.log"));
            cluster_dir.remove_all(Path::new(&format!("{name}.console.log")))?;
            let mut c = match &opts.qemu {
                Some(q) => Command::new(q),
                None => tools.command("qemu-system-x86_64")?,
            };
            c.args(["-accel", if accel == Accel::Kvm { "kvm" } else { "tcg" }])
                .args(["-machine", "q35", "-m", &opts.memory.to_string()])
                .args(["-no-reboot", "-nodefaults", "-display", "none", "-serial"])
                .arg(format!("file:{}", console.display()))
                .arg("-kernel")
                .arg(&kernel);
            let mut append =
                format!("console=ttyS0 panic=-1 reprovm.node={i} reprovm.nodes={}", opts.nodes);
            if let Some(image) = &image {
                let overlay = overlays.join(format!("{name}.qcow2"));
                if !overlay.exists() {
                    reprovm_fs::util::output_checked(
                        tools
                            .command("qemu-img")?
                            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                            .arg(image)
                            .arg(&overlay),
                    )?;
                }
                c.arg("-drive")
                    .arg(format!("id=d0,file={},format=qcow2,if=none", overlay.display()))
                    .args(["-device", "virtio-blk-pci,drive=d0"]);
                append = format!("root=/dev/vda rw {append}");
            }
            if let Some(initrd) = &initrd {
                c.arg("-initrd").arg(initrd);
            }
            if !opts.append.is_empty() {
                append = format!("{append} {}", opts.append);
            }
            c.arg("-append").arg(append);
            let ssh_port = opts.ssh_port_base + i as u16;
            c.args([
                "-netdev",
                &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"),
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac=52:54:00:{i:02x}:00:00"),
            ]);
            for (k, (hub, end)) in cluster.hubs.iter().zip(&ends).enumerate() {
                let me = end[i - 1];
                c.args([
                    "-netdev",
                    &format!(
                        "dgram,id=n{},local.type=inet,local.host=127.0.0.1,local.port={},remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                        k + 1,
                        me.port(),
                        hub.addr.port()
                    ),
                    "-device",
                    &format!("virtio-net-pci,netdev=n{},mac=52:54:00:{i:02x}:{:02x}:00", k + 1, k + 1),
                ]);
            }
            c.args(["-device", "virtio-rng-pci"]);
            if let Some(k) = &opts.ssh_key {
                c.arg("-fw_cfg")
                    .arg(format!("name=opt/reprovm/authorized_keys,file={}", k.display()));
            }
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
            // SAFETY: prctl in the child before exec; PR_SET_PDEATHSIG only sets a signal.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let shown = reprovm_fs::util::display_command(&c);
            let child = c.spawn().with_context(|| format!("starting `{shown}`"))?;
            progress::say(&format!(
                "{name}: ssh -p {ssh_port} root@127.0.0.1; net1 {}, net2 {}; console {}",
                format_args!("192.168.1.{i}"),
                format_args!("192.168.2.{i}"),
                console.display()
            ));
            cluster.nodes.push(Node { index: i, name, ssh_port, console, child });
        }
        Ok(cluster)
    }

    /// Wait until every node's console says it has booted (or one exits, or the deadline).
    pub(crate) fn wait_booted(&mut self, deadline: Instant) -> Result<()> {
        let mut up = vec![false; self.nodes.len()];
        loop {
            if interrupted() {
                bail!("interrupted");
            }
            for (n, node) in self.nodes.iter_mut().enumerate() {
                if up[n] {
                    continue;
                }
                if let Some(st) = node.child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = node.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    bail!("{}'s QEMU exited ({st}) before booting: {}", node.name, err.trim());
                }
                let log = std::fs::read_to_string(&node.console).unwrap_or_default();
                if log.contains("Kernel panic") {
                    bail!("{}: kernel panic (console {})", node.name, node.console.display());
                }
                if log.contains("reprovm: boot complete") {
                    up[n] = true;
                    progress::say(&format!(
                        "{} up after {:.1}s",
                        node.name,
                        self.started.elapsed().as_secs_f64()
                    ));
                }
            }
            if up.iter().all(|u| *u) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let late: Vec<&str> = self
                    .nodes
                    .iter()
                    .zip(&up)
                    .filter(|(_, u)| !**u)
                    .map(|(n, _)| n.name.as_str())
                    .collect();
                bail!("{} did not boot in time (see their consoles)", late.join(", "));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Wait for every QEMU to exit (after a poweroff) until `deadline`; true when all have.
    pub(crate) fn wait_exited(&mut self, deadline: Instant) -> Result<bool> {
        loop {
            let mut all = true;
            for node in &mut self.nodes {
                all &= node.child.try_wait()?.is_some();
            }
            if all {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Run until interrupted or `timeout` passes, or every node has powered off.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Result<()> {
        let until = timeout.map(|t| self.started + t);
        loop {
            if interrupted() {
                progress::say("interrupted: stopping every node");
                return Ok(());
            }
            if until.is_some_and(|u| Instant::now() > u) {
                progress::say("timeout: stopping every node");
                return Ok(());
            }
            if self.wait_exited(Instant::now())? {
                progress::say("every node has powered off");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        self.hubs.clear();
        if let Some(dir) = &self.run_dir {
            if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
                if let Ok(d) = Dir::open(parent) {
                    let _ = d.remove_all(Path::new(name));
                }
            }
        }
    }
}

/// `cluster run --nodes N`: start the cluster, say how to reach every node, run until Ctrl-C, the
/// timeout, or every node powers off; then stop and clean up.
pub fn run_cluster(
    ctx: &RunContext,
    opts: &ClusterOptions,
    timeout: Option<Duration>,
) -> Result<()> {
    let mut cluster = Cluster::start(ctx, opts)?;
    progress::say(&format!(
        "{} nodes running (Ctrl-C stops them all); consoles in {}",
        cluster.nodes.len(),
        ctx.project.out.join("cluster").join(opts.ssh_port_base.to_string()).display()
    ));
    cluster.wait(timeout)?;
    drop(cluster);
    if interrupted() {
        bail!("interrupted; every node stopped and its overlay removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_ping_averages_are_read() {
        let out = "PING 192.168.1.2 (192.168.1.2): 56 data bytes\n--- 192.168.1.2 ping statistics ---\n4 packets transmitted, 4 packets received, 0% packet loss\nround-trip min/avg/max = 50.512/51.203/52.001 ms\n";
        assert_eq!(test::ping_avg(out), Some(51.203));
        assert_eq!(test::ping_avg("nothing"), None);
    }

    #[test]
    fn a_hub_forwards_to_every_other_node_and_ignores_strangers() {
        let (a, b, c) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A frame that must arrive gets 10 s (a loaded machine may be slow to run the hub);
        // one that must not arrive is looked for for 500 ms.
        let expect = |s: &UdpSocket, arrives: bool| {
            let wait = if arrives { 10_000 } else { 500 };
            s.set_read_timeout(Some(Duration::from_millis(wait))).unwrap();
        };
        let hub = Hub::start(vec![
            a.local_addr().unwrap(),
            b.local_addr().unwrap(),
            c.local_addr().unwrap(),
        ])
        .unwrap();
        a.send_to(b"frame from a", hub.addr).unwrap();
        let mut buf = [0u8; 64];
        for s in [&b, &c] {
            expect(s, true);
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"frame from a"[..], hub.addr));
        }
        expect(&a, false);
        assert!(a.recv_from(&mut buf).is_err(), "the sender got its own frame back");
        stranger.send_to(b"let me in", hub.addr).unwrap();
        for s in [&a, &b, &c] {
            expect(s, false);
            assert!(s.recv_from(&mut buf).is_err(), "a stranger's frame was forwarded");
        }
    }
}
