//! The last step before a build's exec: no privilege of any kind. Every capability goes from
//! every set (bounding, ambient, inheritable, permitted, effective) and the securebits make
//! sure an exec as uid 0 cannot bring them back; `no_new_privs` stops setuid binaries and file
//! capabilities; then the seccomp filter (`seccomp.rs`) refuses the calls that could change
//! the sandbox itself.

use anyhow::{bail, Result};

// linux/securebits.h
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

// linux/capability.h
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(op, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }
        == 0
    {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Drop every capability and privilege, then install the seccomp filter.
pub fn drop_everything() -> Result<()> {
    // While CAP_SETPCAP is still held: lock uid 0 out of ever regaining capabilities.
    prctl(
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
    )
    .map_err(|e| anyhow::format_err!("setting securebits: {e}"))?;
    for cap in 0..64 {
        match prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(()) => {}
            // Past the last capability this kernel knows.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => bail!("dropping capability {cap} from the bounding set: {e}"),
        }
    }
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong)
        .map_err(|e| anyhow::format_err!("clearing ambient capabilities: {e}"))?;
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: capset with a valid header and two zeroed data structs (version 3).
    if unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } != 0 {
        bail!("clearing capabilities: {}", std::io::Error::last_os_error());
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
        .map_err(|e| anyhow::format_err!("setting no_new_privs: {e}"))?;
    super::seccomp::install()
}
