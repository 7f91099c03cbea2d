//! `g4q imatrix`: the importance matrix llama-imatrix computes, from g4q's own f32 forward pass,
//! written in llama.cpp's GGUF imatrix format (so `g4q convert --imatrix` and llama.cpp's
//! `llama-quantize --imatrix` both take it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use convert::output::{check_target, Kind};
use convert::Checkpoint;
use quantize::calibrate::{calibration_tokens, compute_imatrix_with, ImatrixOptions};
use quantize::imatrix::TensorStats;
use quantize::Imatrix;
use verify::spill::MemoryBudget;

use super::{progress, usage};

/// The calibration flags `g4q imatrix` and `g4q convert --imatrix auto` share.
#[derive(clap::Args, Debug, Clone)]
pub struct Chunking {
    /// Tokens per chunk (llama-imatrix `-c`); each chunk starts with BOS and runs on its own.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Use at most N chunks of the text (llama-imatrix `--chunks`); default: all it fills.
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// Chunk activations (residual streams, per-layer inputs, stashed K/V) kept in memory
    /// before spilling to a temporary folder: bytes, or with a unit as
    /// `verify --max-memory` takes (4G, 512MiB, 2GB).
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = super::verify::parse_size)]
    pub max_memory: usize,
}

/// Flags of `g4q imatrix`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint folder (config.json, safetensors, tokenizer.json).
    #[arg(required_unless_present = "in_file")]
    pub model: Option<PathBuf>,
    /// Calibration text (UTF-8); tokenized whole, then cut into chunks.
    #[arg(long, value_name = "FILE.txt", required_unless_present = "in_file")]
    pub data: Option<PathBuf>,
    /// Output file (llama.cpp's GGUF imatrix format).
    #[arg(long, required_unless_present = "in_file")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub chunking: Chunking,
    /// Print per-tensor statistics of the result (as llama-imatrix --show-statistics).
    #[arg(long)]
    pub show_statistics: bool,
    /// Compute nothing: print the statistics of this existing imatrix (GGUF or legacy .dat),
    /// e.g. to compare llama.cpp's with g4q's.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "data", "out"])]
    pub in_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(file) = &args.in_file {
        print_statistics(&Imatrix::read(file)?.statistics());
        return Ok(());
    }
    let (Some(model), Some(data), Some(out)) = (&args.model, &args.data, &args.out) else {
        return Err(usage("give MODEL, --data and --out (or --in-file)"));
    };
    check_target(out, Kind::File, &[model, data])?;
    let ckpt = Checkpoint::open(model)?;
    let im = compute(model, &ckpt, data, &args.chunking)?;
    im.write_gguf(out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "g4q: wrote {} ({} tensors, {} chunks of {} tokens)",
        out.display(),
        im.entries.len(),
        im.chunk_count,
        im.chunk_size
    );
    if args.show_statistics {
        print_statistics(&im.statistics());
    }
    Ok(())
}

/// Tokenizes `data` with the model's tokenizer and runs the imatrix collection with a progress
/// bar (terminal only); reports tokens per second on stderr. The data set is recorded under the
/// path as given, as llama-imatrix does.
pub fn compute(
    model_dir: &Path,
    ckpt: &Checkpoint,
    data: &Path,
    chunking: &Chunking,
) -> anyhow::Result<Imatrix> {
    if chunking.ctx == 0 {
        return Err(usage("--ctx must be at least 1"));
    }
    let tokens = calibration_tokens(model_dir, data, ckpt.config().bos_token_id)?;
    let opts = ImatrixOptions {
        ctx: chunking.ctx,
        max_chunks: chunking.chunks,
        dataset: data.to_string_lossy().into_owned(),
    };
    let bar = progress::bar(0, "imatrix");
    let mut tick = |done: usize, all: usize| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    };
    let start = Instant::now();
    let budget = MemoryBudget::new(chunking.max_memory);
    let im = compute_imatrix_with(ckpt, &tokens, &opts, &budget, &mut tick)
        .with_context(|| format!("imatrix over {}", data.display()))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let n_tok = u64::from(im.chunk_count) * u64::from(im.chunk_size);
    eprintln!(
        "g4q: imatrix over {} chunks x {} tokens in {secs:.2} s ({:.0} tokens/s)",
        im.chunk_count,
        im.chunk_size,
        n_tok as f64 / secs.max(1e-9)
    );
    Ok(im)
}

/// One row per tensor: Σ, range, mean and spread of E[x²], the share of active columns, the
/// entropy (absolute and as % of its maximum), the share of values beyond one σ, and the cosine
/// similarity with the previous block's same tensor.
fn print_statistics(stats: &[TensorStats]) {
    println!(
        "{:<32} {:>12} {:>10} {:>12} {:>10} {:>10} {:>7} {:>8} {:>9} {:>8} {:>7} {:>7}",
        "tensor",
        "sum E[x2]",
        "min",
        "max",
        "mean",
        "stddev",
        "N",
        "active%",
        "entropy",
        "H norm%",
        "ZD%",
        "cos"
    );
    for s in stats {
        let cos = s.cos_prev.map_or("-".to_string(), |c| format!("{c:.4}"));
        println!(
            "{:<32} {:>12.4} {:>10.4} {:>12.4} {:>10.4} {:>10.4} {:>7} {:>8.2} {:>9.4} {:>8.2} {:>7.2} {:>7}",
            s.name,
            s.sum,
            s.min,
            s.max,
            s.mean,
            s.std_dev,
            s.n,
            s.active_pct,
            s.entropy,
            s.entropy_norm_pct,
            s.z_outlier_pct,
            cos
        );
    }
}
