//! reprovm's command line: `cargo xtask COMMAND`. Parsing and dispatch only (`cli.rs`); the
//! engine is the `reprovm` crate. See ARCHITECTURE.md.

mod cli;
mod commands;
mod legacy;

#[cfg(test)]
mod docs;

/// A closed stdout (`cargo xtask targets | head -1`) ends the command quietly with 141, the
/// status a shell reports for a process ended by SIGPIPE, instead of a panic (101). The
/// signal itself stays ignored, as Rust sets it: a pipe to a child that exited must be an
/// error the engine handles, not the end of the process.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // println! ("failed printing to stdout: Broken pipe") and clap_complete's writer.
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn main() {
    // The sandbox re-executes this binary as its namespace init: handle that before clap.
    if let Some(code) = reprovm_sandbox::maybe_run_init() {
        std::process::exit(code);
    }
    quiet_on_closed_stdout();
    match cli::run() {
        Ok(code) => std::process::exit(code),
        // 1 is a command's negative answer (`diff`, `update --check`, `store verify`); an
        // error is 2, as clap's own usage errors are (docs/reference/exit-status.md).
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}
