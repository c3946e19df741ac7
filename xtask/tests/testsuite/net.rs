//! Full tier: the network-test image, `hd-image-net`: hd-image with Debian's tcpdump,
//! iperf3, nftables, ethtool, strace and socat (`[rootfs] debian` of recipes/rootfs-net.toml,
//! locked in pins/debian/). Its lock is what resolving gives again; it builds to its pins and
//! audits on both architectures; two nodes of a cluster measure TCP throughput with iperf3
//! over net1 while tcpdump captures it, and an nft rule that drops the port makes the next
//! run fail; the arm64 image boots under TCG. A package the suite lacks, a package file that
//! collides with a built one, and a .deb whose bytes are not the lock's are refused, named.

use crate::support::{self, repo, xtask_ok as ok};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `cmd` on the node whose SSH is on `port`, with the pinned ssh: (success, output).
fn ssh(port: u16, key: &Path, cmd: &str) -> (bool, String) {
    support::guest_ssh(port, key, cmd)
}

fn must(port: u16, key: &Path, cmd: &str) -> String {
    let (good, out) = ssh(port, key, cmd);
    assert!(good, "`{cmd}` on 127.0.0.1:{port} failed: {out}");
    out
}

/// A copy of the project (recipes, pins, toolchain specs) whose recipes can be edited, built
/// into the repository's out/ (its store and toolchain) through REPROVM_ROOT.
fn project_copy(t: &Path) -> std::path::PathBuf {
    let p = t.join("project");
    for d in ["recipes", "pins", "toolchain"] {
        support::copy_tree(&repo().join(d), &p.join(d));
    }
    p
}

#[test]
#[ignore = "full tier: the network-test image (Debian packages in the image)"]
fn the_network_image_is_pinned_and_its_tools_work_in_a_cluster() {
    let _full = support::full_tier();
    // Resolving again gives the same locks, byte for byte.
    let again = ok(&["pin", "debian", "rootfs-net"]);
    assert_eq!(again.matches("unchanged").count(), 2, "{again}");
    // Both architectures build to their pins, and rebuild alike under varied conditions.
    ok(&["audit", "rootfs-net", "hd-image-net"]);
    ok(&["--arch", "aarch64", "audit", "rootfs-net", "hd-image-net"]);
    let sbom = repo().join("out/attestations/hd-image-net/sbom.cdx.json");
    ok(&["attest", "hd-image-net"]);
    let sbom: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    let tcpdump = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tcpdump")
        .expect("tcpdump is a component of hd-image-net's SBOM");
    assert!(tcpdump["purl"].as_str().unwrap().starts_with("pkg:deb/debian/tcpdump@"), "{tcpdump}");
    assert_eq!(tcpdump["hashes"][0]["content"].as_str().unwrap().len(), 64, "{tcpdump}");

    // arm64 boots under TCG. A recipe that is not published has its results in
    // out/targets/NAME/: out/hd.img stays hd-image's.
    ok(&["--arch", "aarch64", "build", "hd-image-net"]);
    let arm = repo().join("out/aarch64/targets/hd-image-net");
    let (arm_kernel, arm_image) = (arm.join("Image"), arm.join("hd.img"));
    ok(&[
        "--arch",
        "aarch64",
        "boot-test",
        "--kernel",
        arm_kernel.to_str().unwrap(),
        "--image",
        arm_image.to_str().unwrap(),
    ]);

    // A cluster of two x86_64 nodes.
    ok(&["build", "hd-image-net"]);
    let image = repo().join("out/targets/hd-image-net/hd.img");
    assert!(image.is_file());
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    let o = support::tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success());
    let base = 16022u16;
    let log = keys.path().join("cluster.log");
    let cluster = support::xtask()
        .args(["cluster", "run", "--nodes", "2", "--ssh-port", &base.to_string()])
        .args(["--lifetime", "600", "--image", image.to_str().unwrap(), "--ssh-key"])
        .arg(key.with_extension("pub"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    // Stopped (SIGTERM: every node and overlay cleaned up) however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let mut cluster = Running(cluster);
    let (vm1, vm2) = (base + 1, base + 2);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(ssh(vm1, &key, "true").0 && ssh(vm2, &key, "true").0) {
        assert!(Instant::now() < deadline, "the nodes did not answer SSH");
        assert!(
            cluster.0.try_wait().unwrap().is_none(),
            "the cluster ended early: {}",
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    must(vm2, &key, "iperf3 -s -D -p 5201 && sleep 1");
    // vm001 measures while its tcpdump captures the test's packets on net1 (one session: a
    // background job of an SSH session ends with it).
    let json = must(
        vm1,
        &key,
        "tcpdump -i eth1 -n -c 20 -w /tmp/iperf.pcap tcp port 5201 2> /tmp/tcpdump.log & sleep 2; \
         iperf3 -c 192.168.1.2 -p 5201 -t 2 -J; wait",
    );
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let bps = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap();
    assert!(bps > 0.0, "{json}");
    eprintln!("iperf3 vm001 -> vm002 over net1: {:.1} Mbit/s", bps / 1e6);
    let read =
        must(vm1, &key, "tcpdump -n -r /tmp/iperf.pcap 2>/dev/null | grep -c 192.168.1.2.5201");
    assert!(read.trim().parse::<u32>().unwrap_or(0) >= 1, "tcpdump captured nothing: {read}");
    // An nft rule that drops the port: the next measurement fails.
    must(
        vm2,
        &key,
        "nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }' && nft add rule inet t in tcp dport 5201 drop",
    );
    let (good, out) =
        ssh(vm1, &key, "timeout 20 iperf3 -c 192.168.1.2 -p 5201 -t 2 --connect-timeout 3000");
    assert!(!good, "iperf3 passed through the nft rule: {out}");
    drop(cluster);

    // Refusals, in a copy of the project.
    let t = tempfile::tempdir().unwrap();
    let project = project_copy(t.path());
    // Its recipes and pins, the repository's out/ (store, toolchain, download cache).
    let in_copy = |args: &[&str]| {
        support::xtask()
            .env("REPROVM_ROOT", &project)
            .arg("--out")
            .arg(repo().join("out"))
            .args(args)
            .output()
            .unwrap()
    };
    let rootfs_net = project.join("recipes/rootfs-net.toml");
    let text = std::fs::read_to_string(&rootfs_net).unwrap();
    // A package the suite does not have.
    std::fs::write(&rootfs_net, text.replace("\"socat\"]", "\"socat\", \"no-such-package\"]"))
        .unwrap();
    let o = in_copy(&["pin", "debian", "rootfs-net"]);
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("no package `no-such-package`"),
        "{}",
        support::stderr(&o)
    );
    // A package whose files collide with what the recipes build: Debian's busybox.
    std::fs::write(&rootfs_net, text.replace("\"socat\"]", "\"socat\", \"busybox\"]")).unwrap();
    let o = in_copy(&["pin", "debian", "rootfs-net"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let o = in_copy(&["build", "rootfs-net"]);
    let e = support::stderr(&o);
    assert!(!o.status.success() && e.contains("Debian package busybox installs it"), "{e}");
    // A .deb whose bytes are not the lock's: refused with both hashes (the lock of the copy
    // says another sha256 for tcpdump; the mirror's pool serves the real one).
    std::fs::write(&rootfs_net, &text).unwrap();
    let lock_path = project.join("pins/debian/rootfs-net.lock");
    std::fs::copy(repo().join("pins/debian/rootfs-net.lock"), &lock_path).unwrap();
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let table: toml::Table = lock.parse().unwrap();
    let real = table["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("tcpdump"))
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let fake = "0".repeat(64);
    std::fs::write(&lock_path, lock.replace(&real, &fake)).unwrap();
    let o = in_copy(&["fetch", "rootfs-net"]);
    let e = support::stderr(&o);
    assert!(!o.status.success() && e.contains(&fake) && e.contains(&real), "{e}");
}
