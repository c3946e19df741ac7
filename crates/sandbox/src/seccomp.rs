//! The build's seccomp filter (seccompiler, from rust-vmm/Firecracker): every system call is
//! allowed except those that could change the sandbox or reach past it, which fail with EPERM:
//! mounting and unmounting in all their forms (mount, umount2, pivot_root, the new mount API),
//! new namespaces (unshare/clone with CLONE_NEW*, setns), the kernel keyring, bpf, kexec,
//! module loading, ptrace and cross-process memory access, perf events, userfaultfd,
//! io_uring (whose requests bypass seccomp), swap, reboot, clock setting, syslog, acct,
//! quotactl and file-handle opens. `clone3` fails with ENOSYS so that libc falls back to
//! `clone`, whose flags the filter can see. The architecture check of the generated program
//! kills a process that switches ABI (i386 through int 0x80); the x32 numbers of the refused
//! calls are refused too.

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// Namespace flags of clone/unshare.
const NAMESPACE_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
    0x80, // CLONE_NEWTIME
];

/// Calls refused outright.
#[cfg(target_arch = "x86_64")]
const REFUSED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_setns,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_iopl,
    libc::SYS_ioperm,
];

/// The x32 ABI shares x86_64's audit architecture; its numbers carry this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

fn rules_for_flags(arg: u8) -> Result<Vec<SeccompRule>> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )?;
            Ok(SeccompRule::new(vec![cond])?)
        })
        .collect()
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, action: SeccompAction) -> Result<BpfProgram> {
    let arch = std::env::consts::ARCH.try_into().context("seccomp: unsupported architecture")?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, action, arch)?;
    Ok(filter.try_into()?)
}

/// The two programs: EPERM for the refused calls, ENOSYS for clone3.
#[cfg(target_arch = "x86_64")]
pub fn programs() -> Result<[BpfProgram; 2]> {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in REFUSED {
        eperm.insert(nr, vec![]);
        eperm.insert(nr | X32_SYSCALL_BIT, vec![]);
    }
    // clone(flags, ...) and unshare(flags): refused when any namespace flag is set.
    for nr in [libc::SYS_clone, libc::SYS_unshare] {
        eperm.insert(nr, rules_for_flags(0)?);
        eperm.insert(nr | X32_SYSCALL_BIT, rules_for_flags(0)?);
    }
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, vec![]);
    enosys.insert(libc::SYS_clone3 | X32_SYSCALL_BIT, vec![]);
    Ok([
        compile(eperm, SeccompAction::Errno(libc::EPERM as u32))?,
        compile(enosys, SeccompAction::Errno(libc::ENOSYS as u32))?,
    ])
}

#[cfg(not(target_arch = "x86_64"))]
pub fn programs() -> Result<[BpfProgram; 2]> {
    anyhow::bail!(
        "the sandbox's seccomp filter is written for x86_64; this host is {}",
        std::env::consts::ARCH
    )
}

/// Install the filter on this thread (needs no_new_privs, which lockdown sets first).
pub fn install() -> Result<()> {
    for p in programs()? {
        seccompiler::apply_filter(&p).context("installing the seccomp filter")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        let [eperm, enosys] = programs().unwrap();
        assert!(eperm.len() > REFUSED.len(), "{}", eperm.len());
        assert!(!enosys.is_empty());
    }
}
