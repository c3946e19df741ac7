//! The sandbox's inside: runs in the re-executed xtask binary (single-threaded, before clap).
//!
//! stage 1 (child of the xtask): unshare the namespaces, fork.
//! stage 2 (PID 1 of the new PID namespace): mounts, pivot_root, hostname, loopback, fork.
//! stage 3 (the build): a user namespace of its own, no capabilities, `no_new_privs`,
//!   seccomp, then exec of the build command with the fixed environment.
//!
//! Unprivileged, stage 1 creates the user namespace (the caller's uid/gid as 0) and stage 2
//! sets up the mounts as its root; the build then enters a nested user namespace, so it holds
//! no capability over the mount namespace: mount flags (read-only binds) are locked.
//! As root, stages 1 and 2 stay host root in the initial user namespace (so host paths are
//! resolved with root's rights) and the build's user namespace maps its uid/gid 0 to the
//! leased unprivileged id (`ids.rs`): it is never host root and owns no mount.
//! When PID 1 exits the kernel kills everything left in the namespace.

use super::{lockdown, InitSpec, Spec, HOSTNAME, INIT_ENV};
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// If this process is a sandbox init, run it and return the exit code.
pub fn maybe_run_init() -> Option<i32> {
    let spec = std::env::var_os(INIT_ENV)?;
    let code = if spec == "probe" {
        match probe() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e:#}");
                1
            }
        }
    } else {
        match stage1(Path::new(&spec)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("reprovm sandbox: {e:#}");
                126
            }
        }
    };
    Some(code)
}

fn other_namespaces() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
}

/// Unprivileged: a user namespace whose only uid/gid (0) is the caller's, plus the rest.
fn enter_namespaces_unprivileged() -> Result<()> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER | other_namespaces())
        .context("unshare(user, mount, pid, net, uts, ipc)")?;
    map_self(uid.as_raw(), gid.as_raw())
}

/// Map this process's uid/gid 0 to `uid`/`gid` of the parent user namespace (allowed without
/// privilege when they are the process's own ids there).
fn map_self(uid: u32, gid: u32) -> Result<()> {
    // Unprivileged gid maps require setgroups to be denied first.
    std::fs::write("/proc/self/setgroups", "deny").context("denying setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("writing uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("writing gid_map")?;
    Ok(())
}

/// The preflight: namespaces, id maps, a tmpfs mount and loopback, then exit.
fn probe() -> Result<()> {
    enter_namespaces_unprivileged()?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private")?;
    mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::empty(), None::<&str>)
        .context("mounting a tmpfs")?;
    loopback_up()?;
    Ok(())
}

fn die_with_parent() {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
    }
}

/// No core dumps, no ptrace or /proc/PID/mem access by same-uid processes without
/// CAP_SYS_PTRACE in this process's user namespace (which the build never has).
fn not_dumpable() {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn stage1(spec_path: &Path) -> Result<i32> {
    die_with_parent();
    not_dumpable();
    let text =
        std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let init: InitSpec = serde_json::from_slice(&text)?;
    match init.host_id {
        Some(_) => unshare(other_namespaces()).context("unshare(mount, pid, net, uts, ipc)")?,
        None => enter_namespaces_unprivileged()?,
    }
    // SAFETY: single-threaded process (re-executed binary before any thread is spawned).
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            let code = match stage2(&init.spec, init.host_id) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("reprovm sandbox: {e:#}");
                    126
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => Ok(reap_until(child)),
    }
}

/// Reap children until `main` exits (as PID 1, orphans of the namespace too); its status.
fn reap_until(main: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 126,
        }
    }
}

/// Flags a bind mount inherited and may not drop inside a user namespace.
fn locked_flags(path: &Path) -> MsFlags {
    let mut f = MsFlags::empty();
    if let Ok(st) = statvfs(path) {
        let fl = st.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if fl.contains(a) {
                f |= b;
            }
        }
    }
    f
}

fn bind(src: &Path, dest: &Path, rw: bool) -> Result<()> {
    mount(Some(src), dest, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("bind {} -> {}", src.display(), dest.display()))?;
    if !rw {
        remount_ro(dest)?;
    }
    Ok(())
}

fn remount_ro(dest: &Path) -> Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(dest);
    mount(None::<&str>, dest, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("read-only remount of {}", dest.display()))
}

fn inside(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

fn stage2(spec: &Spec, host_id: Option<u32>) -> Result<i32> {
    die_with_parent();
    not_dumpable();
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private")?;
    let root = &spec.root;
    bind(root, root, true)?;
    for b in &spec.binds {
        bind(&b.src, &inside(root, &b.dest), b.rw)?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let proc = inside(root, Path::new("/proc"));
    mount(Some("proc"), &proc, Some("proc"), nosuid | MsFlags::MS_NOEXEC, None::<&str>)
        .context("mounting /proc")?;
    // Sysctls: readable, never writable (some are global to the host).
    bind(&proc.join("sys"), &proc.join("sys"), false)?;
    mount(
        Some("tmpfs"),
        &inside(root, Path::new("/tmp")),
        Some("tmpfs"),
        nosuid,
        Some("mode=1777"),
    )
    .context("mounting /tmp")?;
    setup_dev(&inside(root, Path::new("/dev")))?;
    // pivot_root(".", ".") then detach the old root: the host tree is gone from this namespace.
    nix::unistd::chdir(root.as_path()).context("chdir to the new root")?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/")?;
    if !spec.root_rw {
        remount_ro(Path::new("/"))?;
    }
    nix::unistd::sethostname(HOSTNAME).context("sethostname")?;
    // SAFETY: setdomainname with a valid buffer and its length.
    if unsafe { libc::setdomainname(c"(none)".as_ptr(), 6) } != 0 {
        bail!("setdomainname: {}", std::io::Error::last_os_error());
    }
    loopback_up()?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));

    let argv: Vec<CString> =
        spec.argv.iter().map(|a| CString::new(a.as_str())).collect::<Result<_, _>>()?;
    let env: Vec<CString> =
        spec.env.iter().map(|(k, v)| CString::new(format!("{k}={v}"))).collect::<Result<_, _>>()?;
    if argv.is_empty() {
        bail!("empty command");
    }
    // The build and PID 1 talk over two pipes while the build's user namespace is mapped.
    let (unshared_r, unshared_w) = nix::unistd::pipe()?;
    let (mapped_r, mapped_w) = nix::unistd::pipe()?;
    // SAFETY: still single-threaded.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop((unshared_r, mapped_w));
            let e = stage3(spec, host_id, &argv, &env, unshared_w, mapped_r);
            eprintln!("reprovm sandbox: {e:#}");
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            drop((unshared_w, mapped_r));
            if let Some(id) = host_id {
                map_child(child, id, unshared_r, mapped_w)?;
            } else {
                drop((unshared_r, mapped_w));
            }
            Ok(reap_until(child))
        }
    }
}

/// Root mode, PID 1's side: once the build has its own user namespace, map its uid/gid 0 to
/// the leased host id (only a process in the parent namespace with CAP_SETUID may).
fn map_child(child: Pid, id: u32, unshared: OwnedFd, mapped: OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    std::fs::File::from(unshared)
        .read_exact(&mut byte)
        .context("waiting for the build's user namespace")?;
    let proc = PathBuf::from(format!("/proc/{child}"));
    std::fs::write(proc.join("uid_map"), format!("0 {id} 1"))
        .context("writing the build's uid_map")?;
    std::fs::write(proc.join("gid_map"), format!("0 {id} 1"))
        .context("writing the build's gid_map")?;
    std::fs::File::from(mapped).write_all(b"m").context("releasing the build")?;
    Ok(())
}

/// The build: its own user namespace, then no privilege at all, then exec. Returns only on
/// failure.
fn stage3(
    spec: &Spec,
    host_id: Option<u32>,
    argv: &[CString],
    env: &[CString],
    unshared: OwnedFd,
    mapped: OwnedFd,
) -> anyhow::Error {
    let r = (|| -> Result<std::convert::Infallible> {
        nix::unistd::setsid()?;
        nix::unistd::chdir(spec.cwd.as_path())
            .with_context(|| format!("chdir {}", spec.cwd.display()))?;
        unshare(CloneFlags::CLONE_NEWUSER).context("unshare(user) for the build")?;
        match host_id {
            Some(_) => {
                std::fs::File::from(unshared).write_all(b"u")?;
                let mut byte = [0u8; 1];
                std::fs::File::from(mapped)
                    .read_exact(&mut byte)
                    .context("waiting for the id map")?;
                nix::unistd::setgroups(&[]).context("dropping supplementary groups")?;
                let zero_g = nix::unistd::Gid::from_raw(0);
                let zero_u = nix::unistd::Uid::from_raw(0);
                nix::unistd::setresgid(zero_g, zero_g, zero_g).context("setresgid")?;
                nix::unistd::setresuid(zero_u, zero_u, zero_u).context("setresuid")?;
            }
            None => {
                drop((unshared, mapped));
                // uid/gid 0 of the nested namespace is uid/gid 0 of the sandbox's.
                map_self(0, 0)?;
            }
        }
        // Changing credentials cleared the parent-death signal: set it again.
        die_with_parent();
        lockdown::drop_everything().context("dropping privileges")?;
        nix::unistd::execve(&argv[0], argv, env)
            .map_err(|e| anyhow::format_err!("exec {}: {e}", spec.argv[0]))
    })();
    match r {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn setup_dev(dev: &Path) -> Result<()> {
    mount(Some("tmpfs"), dev, Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=0755"))
        .context("mounting /dev")?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        std::fs::write(&target, b"").with_context(|| format!("creating {}", target.display()))?;
        bind(&Path::new("/dev").join(name), &target, true)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    std::fs::create_dir(dev.join("shm"))?;
    std::fs::create_dir(dev.join("pts"))?;
    if mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .is_ok()
    {
        std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    }
    Ok(())
}

/// Bring up `lo` in the new network namespace: loopback works, nothing else exists.
fn loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            bail!("reading loopback flags: {e}");
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            bail!("cannot set loopback interface flags: {e}");
        }
    }
    Ok(())
}
