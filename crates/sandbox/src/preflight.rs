//! Can this host create the namespaces we need? Probed by doing the real thing, and failing
//! with the fix named (sysctl, AppArmor profile) instead of silently building unsandboxed.

use std::sync::OnceLock;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error("user namespaces are unavailable: {detail}. Fix: {fix}")]
    UserNsDenied { detail: String, fix: String },
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Explain a namespace failure in terms of the host's configuration.
pub fn diagnose(detail: &str) -> SandboxError {
    let mut fixes = Vec::new();
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        fixes.push("AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): run `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or install an AppArmor profile granting `userns,` to this binary (see README, Requirements)".to_string());
    }
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        fixes.push("run `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into());
    }
    if read_sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        fixes.push("run `sudo sysctl -w user.max_user_namespaces=15000`".into());
    }
    if fixes.is_empty() {
        fixes.push("run on a Linux host that allows user namespaces (inside Docker: --privileged or seccomp=unconfined)".into());
    }
    SandboxError::UserNsDenied { detail: detail.to_string(), fix: fixes.join("; or ") }
}

/// Probe once per process: a child that unshares every namespace, writes its id maps and
/// mounts a tmpfs (the steps AppArmor's restriction breaks).
pub fn check() -> Result<(), SandboxError> {
    static RESULT: OnceLock<Result<(), SandboxError>> = OnceLock::new();
    RESULT.get_or_init(probe).clone()
}

fn probe() -> Result<(), SandboxError> {
    let out = std::process::Command::new("/proc/self/exe")
        .env_clear()
        .env(super::INIT_ENV, "probe")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| diagnose(&e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(diagnose(String::from_utf8_lossy(&out.stderr).trim()))
    }
}
