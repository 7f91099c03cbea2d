//! `g4q convert`: a checkpoint folder straight to a release file in one streaming pass.

use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::output::{check_target, Kind, ScratchDir};
use convert::Checkpoint;
use quantize::gguf_release::{self, ReleaseOptions};

use super::awq;
use super::imatrix::{self, Chunking};
use super::mix_args::{print_plan, ImatrixArg, MixArgs, Resolved};
use super::{progress, usage};

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// GGUF for llama.cpp: what convert_hf_to_gguf.py followed by llama-quantize writes.
    Gguf,
    /// AWQ int4 (asymmetric, --group-size) as compressed-tensors pack-quantized safetensors: a
    /// folder that transformers (with compressed-tensors) and vLLM load. Needs --data.
    Awq,
    /// ONNX for onnxruntime: a folder with model.onnx, model.onnx.data and the tokenizer files
    /// (`--type f32`).
    Onnx,
}

/// `--intermediate`: the converter's `--outtype` in the llama.cpp chain.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intermediate {
    F32,
    Bf16,
    F16,
}

impl Intermediate {
    fn ggml(self) -> kernels::GgmlType {
        match self {
            Intermediate::F32 => kernels::GgmlType::F32,
            Intermediate::Bf16 => kernels::GgmlType::BF16,
            Intermediate::F16 => kernels::GgmlType::F16,
        }
    }
}

/// Flags of `g4q convert`. `--type` is optional so that `--format awq` (int4 by definition) can
/// go without it; [`run`] requires it for GGUF.
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
    /// Calibration text for `--imatrix auto` (UTF-8), cut into chunks as llama-imatrix does.
    #[arg(long, value_name = "FILE.txt")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub chunking: Chunking,
    /// Search AWQ scales on --data and fold them into the weights before k-quantization.
    #[arg(long)]
    pub awq: bool,
    #[command(flatten)]
    pub awq_args: awq::AwqArgs,
    /// Write the vision/audio projector file (`mmproj`) that llama.cpp's multimodal tools load
    /// beside the text model, as `convert_hf_to_gguf.py --mmproj` writes it: --type F32, F16,
    /// BF16 or Q8_0.
    #[arg(long)]
    pub mmproj: bool,
    /// The type of llama.cpp's intermediate file in the chain this file reproduces
    /// (`convert_hf_to_gguf.py --outtype T`, then `llama-quantize`): the tensors llama-quantize
    /// leaves unquantized keep it, and the others are quantized from its values. llama.cpp's
    /// converter defaults to bf16 for bf16 checkpoints. Default f32.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub intermediate: Option<Intermediate>,
    /// ONNX int4: input columns per MatMulNBits block (32, 64 or 128).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub block_size: usize,
    /// ONNX int4: bits of the embedding tables (the tied head and the per-layer embedding):
    /// 8 (Q8_0 blocks of 32) or 4 (like the linear layers).
    #[arg(long, default_value_t = 8, value_name = "BITS")]
    pub embedding_bits: u8,
    /// ONNX int4: MatMulNBits accuracy_level (0 = f32 activations; 4 = onnxruntime may quantize
    /// activations to int8 on CPU, faster and less exact).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(i64).range(0..=4))]
    pub accuracy_level: i64,
}

/// The file type, mix options and importance matrix: loaded from `--imatrix FILE`, or with
/// `--imatrix auto` computed from `--data` by the reference forward pass (recorded in the file's
/// `quantize.imatrix.file` as `auto`). The flags are checked before the calibration runs, so a
/// typo does not cost a forward pass over the data.
fn resolve_mix(args: &Args, ckpt: &Checkpoint) -> anyhow::Result<Resolved> {
    match (&args.mix.imatrix, &args.data) {
        (Some(ImatrixArg::Auto), Some(data)) => {
            args.mix.resolve_with(None)?;
            let im = imatrix::compute(&args.model, ckpt, data, &args.chunking)?;
            args.mix.resolve_with(Some((im, "auto".to_string())))
        }
        (Some(ImatrixArg::Auto), None) => Err(usage("--imatrix auto needs --data FILE.txt")),
        (_, Some(_)) if !args.awq => Err(usage(
            "--data is only read with --imatrix auto, --awq or --format awq",
        )),
        (_, None) if args.chunking.chunks.is_some() => {
            Err(usage("--chunks is only read with --imatrix auto"))
        }
        _ => args.mix.resolve(),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.mmproj {
        return super::mmproj::run(&args);
    }
    if args.intermediate.is_some() && !matches!(args.format, Format::Gguf) {
        return Err(usage("--intermediate applies to GGUF output only"));
    }
    if let Format::Awq = args.format {
        if args.awq {
            return Err(usage("--format awq does not take --awq"));
        }
        if args.dry_run {
            return awq::dry_run_int4(&args.model, &args.awq_args, args.json);
        }
        let out = args
            .out
            .as_deref()
            .ok_or_else(|| usage("--out is required"))?;
        return awq::write_int4(&args.model, args.data.as_deref(), out, &args.awq_args);
    }
    if let Format::Onnx = args.format {
        return onnx(&args);
    }
    args.mix.required_ftype()?;
    if let Some(out) = &args.out {
        let inputs: Vec<&Path> = [
            Some(args.model.as_path()),
            args.mix.imatrix_file(),
            args.data.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        check_target(out, Kind::File, &inputs)?;
    }
    let mut ckpt = Checkpoint::open(&args.model)?;
    // With --awq the rest of the run (imatrix included) reads the AWQ-scaled checkpoint.
    let mut _scaled_dir = None;
    if args.awq && !args.dry_run {
        let data = (args.data.as_deref()).ok_or_else(|| usage("--awq needs --data FILE.txt"))?;
        let out = args
            .out
            .as_deref()
            .ok_or_else(|| usage("--out is required"))?;
        let (dir, scaled) = awq::scaled_checkpoint(&args.model, &ckpt, data, out, &args.awq_args)?;
        ckpt = scaled;
        _scaled_dir = Some(dir);
    }
    let (ftype, mut mix, imatrix) = resolve_mix(&args, &ckpt)?;
    if let Some(i) = args.intermediate {
        if !ftype.default_type().is_quantized() && i != Intermediate::F32 {
            return Err(usage(format!(
                "--intermediate applies to quantized types (with --type {ftype} the file is the converter's own output)"
            )));
        }
        mix.intermediate = Some(i.ggml());
    }
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
        if args.awq {
            awq::dry_run_note(&ckpt, &args.awq_args);
        }
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

/// `--format onnx`: the ONNX release folder.
fn onnx(args: &Args) -> anyhow::Result<()> {
    use quantize::onnx_release::{self, OnnxOptions, OnnxType, BLOCK_SIZES};
    if args.data.is_some() != args.awq {
        return Err(usage("--format onnx: --awq and --data go together"));
    }
    let ty = args.mix.onnx_type()?;
    if !matches!(args.embedding_bits, 4 | 8) {
        return Err(usage(format!(
            "--embedding-bits {} is not 4 or 8",
            args.embedding_bits
        )));
    }
    if !BLOCK_SIZES.contains(&args.block_size) {
        return Err(usage(format!(
            "--block-size {} is not one of 32, 64, 128",
            args.block_size
        )));
    }
    if args.awq && args.dry_run {
        return Err(usage("--format onnx: --dry-run plans without --awq"));
    }
    let out = match (args.out.as_deref(), args.dry_run) {
        (_, true) => None,
        (Some(o), false) => Some(o),
        (None, false) => return Err(usage("--out is required")),
    };
    if args.awq && ty != OnnxType::Int4 {
        return Err(usage("--awq needs --type int4 with --format onnx"));
    }
    if let Some(out) = out {
        let inputs: Vec<&Path> = [Some(args.model.as_path()), args.data.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        check_target(out, Kind::Folder, &inputs)?;
    }
    let mut ckpt = Checkpoint::open(&args.model)?;
    let mut clips = Default::default();
    // With --awq: the AWQ search at the block size (scales, and clip bounds unless --no-clip),
    // the scales folded into an f32 checkpoint beside --out, and that checkpoint exported.
    let mut _scaled_dir = None;
    if let Some(data) = args.data.as_deref() {
        let mut a = args.awq_args.clone();
        a.group_size = args.block_size;
        let plan = awq::search(
            &args.model,
            &ckpt,
            data,
            &a,
            !a.no_clip,
            true,
            quantize::awq::GroupFit::Partial,
        )?;
        let Some(out) = out else {
            return Err(usage("--out is required"));
        };
        let guard = ScratchDir::beside(out)?;
        let dir = guard.path().join("scaled");
        quantize::awq::export::write_scaled_checkpoint(&ckpt, &plan, &dir, &mut |_, _| {})
            .with_context(|| format!("writing the AWQ-scaled checkpoint {}", dir.display()))?;
        ckpt = Checkpoint::open(&dir)?;
        clips = plan.clips;
        _scaled_dir = Some(guard);
    }
    let opts = OnnxOptions {
        ty,
        block_size: args.block_size,
        accuracy_level: args.accuracy_level,
        embedding_bits: args.embedding_bits,
        clips,
    };
    let (s, fallbacks) = onnx_release::write(&ckpt, out, &opts).with_context(|| match out {
        Some(out) => format!("writing {}", out.display()),
        None => "planning the ONNX release".to_string(),
    })?;
    for f in &fallbacks {
        match f.block_size {
            Some(b) => eprintln!(
                "g4q: {}: block size {b} (its width is not a multiple of {})",
                f.tensor, args.block_size
            ),
            None => eprintln!(
                "g4q: {}: f32 (no block size the type allows divides its width)",
                f.tensor
            ),
        }
    }
    let what = match out {
        Some(out) => format!("wrote {}", out.display()),
        None => "dry run, nothing written".to_string(),
    };
    eprintln!(
        "g4q: {what} (ONNX {}, {} nodes, {} initializers, {:.2} MiB external data)",
        ty.name(),
        s.nodes,
        s.initializers,
        s.data_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
