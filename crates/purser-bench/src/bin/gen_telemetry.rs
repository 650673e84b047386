//! `gen-telemetry`: writes telemetry-shaped usage events as NDJSON.
//!
//!     cargo run --release -p purser-bench --bin gen-telemetry -- --out bench/events.ndjson

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use purser_bench::telemetry::{Shape, generate};

#[derive(Parser)]
#[command(about = "Write a telemetry-shaped stream of CloudEvents (NDJSON)")]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    accounts: u32,
    #[arg(long, default_value_t = 1)]
    clusters_per_account: u32,
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long, default_value_t = 0.03)]
    resend_share: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write; standard output when omitted.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..1.0).contains(&args.resend_share),
        "--resend-share must be in [0, 1)"
    );
    let shape = Shape {
        accounts: args.accounts,
        clusters_per_account: args.clusters_per_account,
        days: args.days,
        resend_share: args.resend_share,
        seed: args.seed,
        ..Shape::default()
    };
    let written = match &args.out {
        Some(path) => {
            let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
            let written = generate(&shape, &mut out)?;
            out.flush()?;
            written
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            let written = generate(&shape, &mut out)?;
            out.flush()?;
            written
        }
    };
    eprintln!(
        "wrote {} events ({} resent), {:.1} MiB",
        written.events,
        written.resent,
        written.bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
