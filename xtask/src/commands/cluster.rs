//! `cargo xtask cluster run|test`: a cluster of VMs from one kernel and image, xcluster-style.
//! Only the options a cluster takes are offered.

use super::values;
use reprovm::ops::boot::{Accel, Target};
use reprovm::ops::cluster::ClusterOptions;
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub what: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Boot N VMs and keep them running: node K is vmK (vm001…), writes to its own overlay,
    /// has SSH on 127.0.0.1:SSH_PORT+K and is on the private networks net1 and net2
    /// (192.168.1.K, 192.168.2.K). Consoles go to out/cluster/SSH_PORT/vmNNN.console.log.
    Run(ClusterRunArgs),
    /// Boot a cluster, check from vm001 that every node answers on both private networks,
    /// log in to vm002 over net1, see netem's delay, power off, leave nothing behind.
    Test(ClusterTestArgs),
}

/// What every node boots.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// How many nodes (1 to 99; `cluster test` needs 2).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nodes: usize,
    /// What every node boots.
    #[arg(long, value_parser = values::parser(&ClusterOptions::TARGETS), default_value = "hd-image")]
    pub target: Target,
    /// Kernel (default: out/bzImage).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Disk image every node's overlay is over (default: out/hd.img).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Extra kernel command line for every node.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Node K's SSH is forwarded from 127.0.0.1:SSH_PORT+K.
    #[arg(long, value_name = "SSH_PORT", default_value_t = 10022)]
    pub ssh_port: u16,
    /// Public key file installed as root's authorized_keys on every node.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Memory of each node in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub memory: u32,
    /// The accelerator (as for `run`).
    #[arg(long, value_parser = values::parser(&Accel::VALUES), default_value = "auto")]
    pub accel: Accel,
    /// A QEMU system emulator of the host to use instead of the pinned one.
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
}

impl NodeArgs {
    fn options(self, persist: Option<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            nodes: self.nodes,
            target: self.target,
            kernel: self.kernel,
            image: self.image,
            ssh_port_base: self.ssh_port,
            ssh_key: self.ssh_key,
            memory: self.memory,
            accel: self.accel,
            qemu: self.qemu,
            persist,
            append: self.append,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ClusterRunArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Keep every node's overlay in DIR (and use them again next time) instead of removing
    /// them when the cluster stops.
    #[arg(long, value_name = "DIR")]
    pub persist: Option<PathBuf>,
    /// Stop every node after this many seconds (default: until Ctrl-C or every node has
    /// powered off).
    #[arg(long, value_name = "SECONDS", value_parser = super::values::seconds)]
    pub lifetime: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct ClusterTestArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds to wait for every node to boot.
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = super::values::seconds)]
    pub timeout: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ClusterArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        match self.what {
            ClusterCommand::Run(args) => {
                let lifetime = args.lifetime.map(std::time::Duration::from_secs);
                reprovm::ops::cluster::run_cluster(
                    ctx,
                    &args.node.options(args.persist),
                    lifetime,
                )?;
            }
            ClusterCommand::Test(args) => {
                let report = reprovm::ops::cluster::cluster_test(
                    ctx,
                    &args.node.options(None),
                    std::time::Duration::from_secs(args.timeout),
                )?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    return Ok(0);
                }
                let rss: Vec<String> =
                    report.rss_kib.iter().map(|k| format!("{} MiB", k / 1024)).collect();
                println!(
                    "cluster test: {} nodes up in {:.1}s; QEMU resident memory per node {}; vm001 -> vm002 on net1 {:.1} ms, {:.1} ms with netem delay 50ms",
                    report.nodes,
                    report.all_up.as_secs_f64(),
                    rss.join(", "),
                    report.rtt_before_ms,
                    report.rtt_netem_ms
                );
            }
        }
        Ok(0)
    }
}
