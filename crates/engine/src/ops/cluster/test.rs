//! `cluster test`: boot a cluster, check its networks from vm001, power it off.

use super::*;

/// Run `cmd` on `node` over its management path; (success, output).
fn on(tools: &HostTools, node: &Node, key: &Path, cmd: &str) -> Result<(bool, String)> {
    boot::ssh(tools, node.ssh_port, key, cmd)
}

fn must(tools: &HostTools, node: &Node, key: &Path, cmd: &str) -> Result<String> {
    let (ok, out) = on(tools, node, key, cmd)?;
    anyhow::ensure!(ok, "{}: `{cmd}` failed: {}", node.name, out.trim());
    Ok(out)
}

/// The average round trip of `count` pings, in ms, from the output of busybox ping.
pub(super) fn ping_avg(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.contains("min/avg/max"))?;
    let numbers = line.split('=').nth(1)?.trim();
    numbers.split('/').nth(1)?.trim().parse().ok()
}

/// What a cluster test measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterReport {
    pub nodes: usize,
    pub all_up: Duration,
    pub rss_kib: Vec<u64>,
    pub rtt_before_ms: f64,
    pub rtt_netem_ms: f64,
}

/// `cluster test`: boot N nodes, check from vm001 that every node answers on both private
/// networks, log in to vm002 over net1, see netem's delay in the round trip, power off.
pub fn cluster_test(
    ctx: &RunContext,
    opts: &ClusterOptions,
    timeout: Duration,
) -> Result<ClusterReport> {
    anyhow::ensure!(opts.nodes >= 2, "--nodes {}: `cluster test` needs at least 2", opts.nodes);
    opts.check(&ctx.project)?;
    let tools = HostTools::get(&ctx.project, &ctx.fetcher)?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("id_ed25519");
    reprovm_fs::util::run_checked(
        tools.command("ssh-keygen")?.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key),
    )?;
    let mut opts = opts.clone();
    opts.ssh_key = Some(key.with_extension("pub"));
    let mut cluster = Cluster::start(ctx, &opts)?;
    cluster.wait_booted(cluster.started + timeout)?;
    let all_up = cluster.started.elapsed();
    progress::say(&format!("all {} nodes up after {:.1}s", opts.nodes, all_up.as_secs_f64()));
    let result = (|| -> Result<ClusterReport> {
        let nodes = &cluster.nodes;
        let first = &nodes[0];
        // Every node knows who it is, and runs the same image (/etc/os-release's BUILD_ID).
        let mut build_ids = std::collections::BTreeSet::new();
        for n in nodes {
            let hostname = must(&tools, n, &key, "hostname")?;
            anyhow::ensure!(hostname.trim() == n.name, "{} says it is {}", n.name, hostname.trim());
            let id = must(&tools, n, &key, ". /etc/os-release && echo $BUILD_ID")?;
            let id = id.trim().to_string();
            anyhow::ensure!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: /etc/os-release has no BUILD_ID (got `{id}`)",
                n.name
            );
            build_ids.insert(id);
        }
        anyhow::ensure!(build_ids.len() == 1, "the nodes run different images: {build_ids:?}");
        progress::say(&format!("every node runs image {}", build_ids.first().unwrap()));
        // From vm001, every other node answers on both private networks.
        for n in &nodes[1..] {
            for net in 1..=NETWORKS.len() {
                let addr = n.address(net);
                must(&tools, first, &key, &format!("ping -c 2 -W 3 {addr}"))
                    .with_context(|| format!("{} does not answer on net{net} ({addr})", n.name))?;
                progress::say(&format!("vm001 -> {} on net{net} ({addr}): answers", n.name));
            }
        }
        // vm001 logs in to vm002 over net1 with a key of its own.
        let second = &nodes[1];
        let public = must(
            &tools,
            first,
            &key,
            "mkdir -p /root/.ssh && dropbearkey -t ed25519 -f /root/.ssh/id_dropbear >/dev/null 2>&1; dropbearkey -y -f /root/.ssh/id_dropbear | grep ^ssh-",
        )?;
        must(
            &tools,
            second,
            &key,
            &format!(
                "echo {} >> /root/.ssh/authorized_keys",
                crate::mechanisms::shell::word(public.trim())?
            ),
        )?;
        let over = must(
            &tools,
            first,
            &key,
            &format!("dbclient -y -i /root/.ssh/id_dropbear root@{} hostname", second.address(1)),
        )?;
        anyhow::ensure!(
            over.lines().any(|l| l.trim() == second.name),
            "SSH from vm001 to {} over net1 answered: {}",
            second.name,
            over.trim()
        );
        progress::say(&format!("vm001 -> {} over net1: ssh login works", second.name));
        // netem on vm002's net1 shows in vm001's round trips.
        let ping = format!("ping -c 4 -W 3 {}", second.address(1));
        let before = ping_avg(&must(&tools, first, &key, &ping)?).context("no ping average")?;
        must(&tools, second, &key, "tc qdisc add dev eth1 root netem delay 50ms")?;
        let after = ping_avg(&must(&tools, first, &key, &ping)?).context("no ping average")?;
        progress::say(&format!(
            "vm001 -> {} on net1: {before:.1} ms, with netem delay 50ms on its eth1: {after:.1} ms",
            second.name
        ));
        anyhow::ensure!(
            after - before >= 40.0,
            "netem's 50 ms did not show: {before:.1} ms before, {after:.1} ms after"
        );
        let rss_kib = nodes.iter().filter_map(Node::rss_kib).collect();
        Ok(ClusterReport {
            nodes: nodes.len(),
            all_up,
            rss_kib,
            rtt_before_ms: before,
            rtt_netem_ms: after,
        })
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            for n in &cluster.nodes {
                let log = reprovm_fs::util::tail_lines(&n.console, 15);
                reprovm_fs::progress::say(&format!(
                    "---- {} ({}) ----\n{log}",
                    n.name,
                    n.console.display()
                ));
            }
            return Err(e.context("cluster test failed"));
        }
    };
    for n in &cluster.nodes {
        let _ = on(&tools, n, &key, "poweroff");
    }
    anyhow::ensure!(
        cluster.wait_exited(Instant::now() + Duration::from_secs(120))?,
        "not every node powered off within 120s"
    );
    progress::say("every node powered off");
    Ok(report)
}
