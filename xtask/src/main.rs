//! reprovm's command line: `cargo xtask COMMAND`. Parsing and dispatch only (`cli.rs`); the
//! engine is the `reprovm` crate. See ARCHITECTURE.md.

mod cli;
mod commands;

fn main() {
    // The sandbox re-executes this binary as its namespace init: handle that before clap.
    if let Some(code) = reprovm_sandbox::maybe_run_init() {
        std::process::exit(code);
    }
    // Status lines of the engine go to stderr; results to stdout.
    reprovm_fs::progress::set_sink(|line| eprintln!("{line}"));
    match cli::run() {
        Ok(code) => std::process::exit(code),
        // 1 is a command's negative answer (`diff`, `update --check`, `store verify`); an
        // error is 2, as clap's own usage errors are (README, "Exit status").
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}
