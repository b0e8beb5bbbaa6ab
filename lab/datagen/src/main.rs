//! `leakscope-labgen`: command line over the generator library; the orchestrator that loads
//! the lab's servers depends on these subcommands and flags, so they stay as they are.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use leakscope_labgen::layouts::{ddl, truth, Layout};
use leakscope_labgen::model::Ctx;
use leakscope_labgen::run::{emit, export};

#[derive(Parser)]
#[command(
    name = "leakscope-labgen",
    version,
    about = "Deterministic synthetic smart-home customer dataset for the leakscope lab"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Data {
    /// Number of users (customers).
    #[arg(long)]
    users: u64,
    /// Seed; the same seed and user count give byte-identical output.
    #[arg(long)]
    seed: u64,
}

impl Data {
    fn ctx(&self) -> Ctx {
        Ctx {
            seed: self.seed,
            users: self.users,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the ground truth (containers, exact record counts, field categories) as JSON.
    Truth {
        #[command(flatten)]
        data: Data,
    },
    /// Stream load data of a layout to stdout.
    Emit {
        #[command(flatten)]
        data: Data,
        #[arg(long, value_enum)]
        layout: Layout,
        /// Container name as in the truth (or its last part); optional for redis and memcached.
        #[arg(long)]
        container: Option<String>,
    },
    /// Print the DDL of a SQL layout.
    Schema {
        #[arg(long, value_enum)]
        layout: Layout,
    },
    /// Write every container of every layout as JSON lines, plus truth.json, under a directory.
    Export {
        #[command(flatten)]
        data: Data,
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    let stdout = io::stdout();
    match cli.cmd {
        Cmd::Truth { data } => {
            let mut w = stdout.lock();
            serde_json::to_writer_pretty(&mut w, &truth(data.ctx()))?;
            w.write_all(b"\n")?;
            w.flush()?;
        }
        Cmd::Emit {
            data,
            layout,
            container,
        } => emit(data.ctx(), layout, container.as_deref(), &mut stdout.lock())?,
        Cmd::Schema { layout } => {
            let mut w = stdout.lock();
            w.write_all(ddl(layout)?.as_bytes())?;
            w.flush()?;
        }
        Cmd::Export { data, out } => export(data.ctx(), &out)?,
    }
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // A consumer that stops reading (`| head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leakscope-labgen: {e:#}");
            ExitCode::from(2)
        }
    }
}
