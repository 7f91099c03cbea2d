//! `g4q convert MODEL --mmproj`: the vision/audio projector file llama.cpp's multimodal tools
//! (`llama-mtmd-cli`, `llama-server --mmproj`) load beside the text model.

use std::path::Path;

use anyhow::Context;
use convert::mmproj::{self, MmprojTensor, OutType};
use convert::output::{check_target, Kind};
use convert::Checkpoint;
use quantize::FileType;
use serde_json::json;

use super::convert::{Args, Format};
use super::usage;

/// The projector file type of a `--type` (`g4q convert --mmproj`, `g4q release --mmproj-type`):
/// F32, F16, BF16 or Q8_0, as llama.cpp's `--outtype`.
pub fn projector_type(ftype: FileType) -> anyhow::Result<OutType> {
    match ftype {
        FileType::AllF32 => Ok(OutType::F32),
        FileType::F16 => Ok(OutType::F16),
        FileType::BF16 => Ok(OutType::BF16),
        FileType::Q8_0 => Ok(OutType::Q8_0),
        other => Err(usage(format!(
            "--mmproj: --type {other} is not a projector type (F32, F16, BF16 or Q8_0, as llama.cpp's converter writes)"
        ))),
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if !matches!(args.format, Format::Gguf) {
        return Err(usage("--mmproj writes GGUF only (drop --format)"));
    }
    let m = &args.mix;
    if args.awq
        || args.data.is_some()
        || m.imatrix.is_some()
        || m.pure
        || !m.tensor_type.is_empty()
        || m.token_embedding_type.is_some()
        || m.output_tensor_type.is_some()
        || args.intermediate.is_some()
    {
        return Err(usage(
            "--mmproj takes --type, --out, --dry-run and --json only (the towers are not quantized with a mix)",
        ));
    }
    let ty = projector_type(args.mix.required_ftype()?)?;
    if let Some(out) = &args.out {
        check_target(out, Kind::File, &[args.model.as_path()])?;
    }
    let ckpt = Checkpoint::open(&args.model)?;
    if args.dry_run {
        print_plan(&mmproj::plan(&ckpt, ty)?, ty, args.json);
        return Ok(());
    }
    let Some(out) = args.out.as_deref() else {
        return Err(usage("--out is required"));
    };
    let tensors =
        mmproj::write(&ckpt, out, ty).with_context(|| format!("writing {}", out.display()))?;
    report(out, &tensors, ty);
    Ok(())
}

fn report(out: &Path, tensors: &[MmprojTensor], ty: OutType) {
    let bytes: u64 = tensors.iter().map(|t| t.bytes).sum();
    eprintln!(
        "g4q: wrote {} (projector, {} tensors, {:.2} MiB, {})",
        out.display(),
        tensors.len(),
        bytes as f64 / (1 << 20) as f64,
        ty.name()
    );
}

fn print_plan(tensors: &[MmprojTensor], ty: OutType, as_json: bool) {
    let params: u64 = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let bytes: u64 = tensors.iter().map(|t| t.bytes).sum();
    if as_json {
        let rows: Vec<_> = tensors
            .iter()
            .map(|t| {
                json!({
                    "name": t.gguf_name,
                    "source": t.hf_name,
                    "shape": t.shape,
                    "type": t.ty.name(),
                    "bytes": t.bytes,
                })
            })
            .collect();
        let doc = json!({"mmproj": true, "file_type": ty.name(), "parameters": params, "bytes": bytes, "tensors": rows});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "{:<40} {:>20} {:>8} {:>12}",
        "tensor", "shape", "type", "bytes"
    );
    for t in tensors {
        println!(
            "{:<40} {:>20} {:>8} {:>12}",
            t.gguf_name,
            format!("{:?}", t.shape),
            t.ty.name(),
            t.bytes
        );
    }
    println!(
        "{} tensors, {params} parameters, {bytes} bytes ({:.2} MiB) ({} projector)",
        tensors.len(),
        bytes as f64 / (1 << 20) as f64,
        ty.name()
    );
}
