//! The sandbox's inside: runs in the re-executed xtask binary (single-threaded, before clap).
//!
//! stage 1 (child of xtask): unshare all namespaces, write uid/gid maps, fork
//! stage 2 (PID 1 of the new PID namespace): mounts, pivot_root, hostname, loopback, fork
//! stage 3: the build command, exec'd with the fixed environment.
//! When PID 1 exits the kernel kills everything left in the namespace.

use super::{Spec, HOSTNAME, INIT_ENV};
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
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

fn all_namespaces() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
}

fn enter_namespaces() -> Result<()> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(all_namespaces()).context("unshare(user, mount, pid, net, uts, ipc)")?;
    // Unprivileged gid maps require setgroups to be denied first.
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("writing uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("writing gid_map")?;
    Ok(())
}

/// The preflight: namespaces, id maps, a tmpfs mount and loopback, then exit.
fn probe() -> Result<()> {
    enter_namespaces()?;
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

fn stage1(spec_path: &Path) -> Result<i32> {
    die_with_parent();
    let text =
        std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: Spec = serde_json::from_slice(&text)?;
    enter_namespaces()?;
    // SAFETY: single-threaded process (re-executed binary before any thread is spawned).
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            let code = match stage2(&spec) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("reprovm sandbox: {e:#}");
                    126
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => Ok(wait_for(child)),
    }
}

fn wait_for(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
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

fn stage2(spec: &Spec) -> Result<i32> {
    die_with_parent();
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private")?;
    let root = &spec.root;
    bind(root, root, true)?;
    for b in &spec.binds {
        bind(&b.src, &inside(root, &b.dest), b.rw)?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        Some("proc"),
        &inside(root, Path::new("/proc")),
        Some("proc"),
        nosuid | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting /proc")?;
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
    // SAFETY: setdomainname with a valid buffer.
    unsafe {
        libc::setdomainname(c"(none)".as_ptr(), 6);
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
    // SAFETY: still single-threaded.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            let _ = nix::unistd::setsid();
            if let Err(e) = nix::unistd::chdir(spec.cwd.as_path()) {
                eprintln!("reprovm sandbox: chdir {}: {e}", spec.cwd.display());
                std::process::exit(126);
            }
            let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
            eprintln!("reprovm sandbox: exec {}: {e}", spec.argv[0]);
            std::process::exit(127);
        }
        ForkResult::Parent { child } => Ok(reap_until(child)),
    }
}

/// PID 1 duties: reap every orphan until the build command exits, then return its status.
fn reap_until(main: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 126,
        }
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
    let _ = Signal::SIGKILL;
    Ok(())
}
