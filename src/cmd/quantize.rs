//! `g4q quantize`: re-quantizes an existing GGUF (F32, F16, BF16 or Q8_0 tensors) as
//! llama-quantize does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::gguf::GgufFile;
use convert::output::{check_target, Kind};
use quantize::gguf_release::ReleaseOptions;

use super::mix_args::MixArgs;
use super::{progress, usage};

/// Flags of `g4q quantize` (`--type` is required).
#[derive(clap::Args, Debug)]
#[command(mut_arg("ftype", |a| a.required(true)))]
pub struct Args {
    /// The input GGUF file.
    pub input: PathBuf,
    #[command(flatten)]
    pub mix: MixArgs,
    /// Output file; written to a temporary file and renamed when complete.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let input = GgufFile::open(&args.input)?;
    let (ftype, mix, imatrix) = args.mix.resolve()?;
    if !ftype.default_type().is_quantized() {
        return Err(usage(format!(
            "--type {ftype}: g4q quantize writes quantized files; use g4q convert for {ftype}"
        )));
    }
    let inputs: Vec<&Path> = [Some(args.input.as_path()), args.mix.imatrix_file()]
        .into_iter()
        .flatten()
        .collect();
    check_target(&args.out, Kind::File, &inputs)?;
    let bar = progress::bar(input.tensors().len() as u64, "quantize");
    let tick = |done: usize, _all: usize| bar.set_position(done as u64);
    let opts = ReleaseOptions {
        ftype,
        mix,
        imatrix: imatrix.as_ref().map(|(im, name)| (im, name.clone())),
        progress: Some(&tick),
    };
    let rows = quantize::requantize::write(&input, &args.out, &opts)
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    eprintln!(
        "g4q: wrote {} ({} tensors, {:.2} MiB, {ftype})",
        args.out.display(),
        rows.len(),
        bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
