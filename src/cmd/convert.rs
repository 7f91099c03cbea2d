//! `g4q convert`: a checkpoint folder straight to a release file in one streaming pass.

use std::path::PathBuf;

use anyhow::Context;
use convert::Checkpoint;
use quantize::gguf_release::{self, ReleaseOptions};

use super::mix_args::{print_plan, MixArgs};
use super::{progress, usage};

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// GGUF for llama.cpp: what convert_hf_to_gguf.py followed by llama-quantize writes.
    Gguf,
}

/// Flags of `g4q convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint folder (config.json, model.safetensors or the sharded index, tokenizer.json).
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "gguf")]
    pub format: Format,
    #[command(flatten)]
    pub mix: MixArgs,
    /// Output file; written to a temporary file and renamed when complete.
    #[arg(long, required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Print the plan (each tensor's type and size, total size, bits per weight) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run, print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Format::Gguf = args.format;
    let ckpt = Checkpoint::open(&args.model)?;
    let (ftype, mix, imatrix) = args.mix.resolve()?;
    let bar = progress::bar(0, "convert");
    let tick = |done: usize, all: usize| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    };
    let opts = ReleaseOptions {
        ftype,
        mix,
        imatrix: imatrix.as_ref().map(|(im, name)| (im, name.clone())),
        progress: Some(&tick),
    };
    if args.dry_run {
        print_plan(&gguf_release::plan(&ckpt, &opts)?, ftype, args.json);
        return Ok(());
    }
    let Some(out) = args.out else {
        return Err(usage("--out is required"));
    };
    let rows = gguf_release::write(&ckpt, &out, &opts)
        .with_context(|| format!("writing {}", out.display()))?;
    bar.finish_and_clear();
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    eprintln!(
        "g4q: wrote {} ({} tensors, {:.2} MiB, {ftype})",
        out.display(),
        rows.len(),
        bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
