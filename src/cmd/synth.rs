//! `g4q synth`: a random bf16 checkpoint with a released variant's real config, names and
//! widths but only N layers, for measuring memory and speed at real tensor sizes without
//! downloading a model. The generation itself lives in `convert::synth`, which also writes a
//! synthetic byte-level tokenizer so `--text` and `g4q convert` work on the result.

use std::path::PathBuf;
use std::time::Instant;

use convert::output::{check_target, Kind};
use convert::Variant;

/// The variant names `--variant` accepts.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum VariantArg {
    E2b,
    E4b,
    #[value(name = "26b-a4b")]
    A26b,
    #[value(name = "31b")]
    B31,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Variant {
        match v {
            VariantArg::E2b => Variant::E2B,
            VariantArg::E4b => Variant::E4B,
            VariantArg::A26b => Variant::A26B,
            VariantArg::B31 => Variant::B31,
        }
    }
}

/// Flags of `g4q synth`.
#[derive(clap::Args)]
pub struct Args {
    /// Released variant whose config and tensor widths to copy.
    #[arg(long, value_enum)]
    pub variant: VariantArg,
    /// Number of decoder layers (the layer pattern ends with a full-attention layer).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub layers: u32,
    /// Output folder (created; config.json and model.safetensors are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_target(&args.out, Kind::Folder, &[])?;
    let variant = Variant::from(args.variant);
    let start = Instant::now();
    let bar = super::progress::bytes_bar("synth");
    let summary = convert::synth::write_synth(
        &args.out,
        variant,
        args.layers as usize,
        args.seed,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} ({} {}-layer, {} tensors, {:.2} GB) in {secs:.1} s ({:.0} MB/s)",
        summary.weights.display(),
        variant.cli_name(),
        args.layers,
        summary.tensors,
        summary.bytes as f64 / 1e9,
        summary.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}
