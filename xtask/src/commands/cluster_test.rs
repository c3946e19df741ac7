use super::run::BootArgs;
use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct ClusterTestArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// How many nodes (at least 2).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds to wait for every node to boot.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

impl ClusterTestArgs {
    /// Boot the cluster, test its networks from vm001, power it off; report what it took.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let opts = self.boot.cluster(self.nodes)?;
        let report = reprovm::ops::cluster::cluster_test(
            ctx,
            &opts,
            std::time::Duration::from_secs(self.timeout),
        )?;
        let rss: Vec<String> = report.rss_kib.iter().map(|k| format!("{} MiB", k / 1024)).collect();
        println!(
            "cluster-test: {} nodes up in {:.1}s; QEMU resident memory per node {}; vm001 -> vm002 on net1 {:.1} ms, {:.1} ms with netem delay 50ms",
            report.nodes,
            report.all_up.as_secs_f64(),
            rss.join(", "),
            report.rtt_before_ms,
            report.rtt_netem_ms
        );
        Ok(0)
    }
}
