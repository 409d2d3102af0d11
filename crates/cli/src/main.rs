//! `provflow`: the command line. Argument parsing and output formatting only; the work is done
//! by `provflow-compiler` and `provflow-runner`. Everything is printed through `out`.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod compile_cmds;
mod graph;
mod key_cmds;
mod out;
mod report;
mod runner_cmds;
mod runner_cmds_ext;
mod state_cmds;
mod worker_cmds;

use clap::Parser;
use std::process::ExitCode;

use args::{Cli, Command};

// The compiler allocates many small values per document; mimalloc roughly halves that cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A large compile allocates gigabytes of short-lived memory. With transparent huge pages the
/// kernel may stall each fault on compacting memory into 2 MiB pages (seconds of system time
/// on a busy machine); 4 KiB pages cost a steady, small fraction of that.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Exit codes (SPEC §5).
pub mod exit {
    pub const OK: u8 = 0;
    /// The definitions or the run failed.
    pub const FAILED: u8 = 1;
    /// Usage or environment error.
    pub const USAGE: u8 = 2;
}

// SIGPIPE stays ignored, as Rust's runtime sets it: a reader that goes away (`| head -1`)
// makes a write fail, which `out` turns into "output closed", instead of killing the process
// in the middle of work it has started (see `out`).
fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // A usage error may quote what was typed: print it inert, without styling.
            out::text(out::Stream::Err, &e.render().to_string());
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            // --help and --version: provflow's own text.
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
    };
    // Every message from here on is scrubbed of the connection strings' passwords.
    provflow_runner::credentials::remember(&cli.global.state);
    for t in &cli.global.targets {
        provflow_runner::credentials::remember(t);
        if let Some((_, url)) = t.split_once('=') {
            provflow_runner::credentials::remember(url);
        }
    }
    let code = match cli.command {
        Command::Compile(a) => compile_cmds::compile(&cli.global, a),
        Command::Schema(a) => compile_cmds::schema(a),
        Command::Graph(a) => compile_cmds::graph(&cli.global, a),
        Command::Import(a) => compile_cmds::import(a),
        Command::Recon(a) => runner_cmds_ext::recon(&cli.global, a),
        Command::Notifications(c) => runner_cmds_ext::notifications(&cli.global, c),
        Command::Test(a) => runner_cmds_ext::test(&cli.global, a),
        Command::State(c) => state_cmds::state(&cli.global, c),
        Command::Worker(a) => worker_cmds::worker(&cli.global, a),
        Command::Key(c) => key_cmds::key(&cli.global, c),
        Command::Lsp => compile_cmds::lsp(),
        other => {
            // A plan writes nothing, not even rendered notifications.
            let renders = !matches!(other, Command::Plan(_));
            let code = runner_cmds::exec(&cli.global, other);
            if renders {
                runner_cmds_ext::render_outbox(&cli.global, code);
            }
            code
        }
    };
    ExitCode::from(code)
}
