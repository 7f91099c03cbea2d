//! The quantization flags `g4q convert` and `g4q quantize` share, and the dry-run plan printout.

use std::path::{Path, PathBuf};

use super::usage;
use kernels::GgmlType;
use quantize::gguf_release::PlanRow;
use quantize::onnx_release::OnnxType;
use quantize::{FileType, Imatrix, MixOptions};
use regex::Regex;
use serde_json::json;

/// Type selection: a llama.cpp file type plus per-tensor overrides.
#[derive(clap::Args, Debug)]
pub struct MixArgs {
    /// Output type: a llama.cpp mix (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, Q8_0, Q4_0, Q4_1,
    /// Q5_0, Q5_1, IQ4_NL, IQ4_XS) or F32/F16/BF16. Q4_K, Q5_K and Q3_K mean their _M mixes, as
    /// in llama-quantize.
    /// With `--format onnx`: f32, f16, int8 or int4.
    /// Required by `g4q quantize` and for GGUF output; `--format awq` is int4 by definition.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    pub ftype: Option<TypeArg>,
    /// Give every quantizable tensor the mix's base type, without llama.cpp's per-tensor rules.
    #[arg(long)]
    pub pure: bool,
    /// Override the type of tensors whose GGUF name matches REGEX (first match wins); repeatable,
    /// e.g. --tensor-type 'ffn_down=q6_k'.
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    pub tensor_type: Vec<String>,
    /// Type of the token embeddings (token_embd, per_layer_token_embd).
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// Type of the output tensor (Gemma 4 ties it to the token embeddings).
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// Importance matrix: llama.cpp's GGUF imatrix format or the legacy .dat; with `g4q convert`,
    /// `auto` computes one from --data with the reference forward pass in the same run.
    #[arg(long, value_name = "FILE|auto", value_parser = parse_imatrix)]
    pub imatrix: Option<ImatrixArg>,
}

/// What `--imatrix` names: a file, or `auto` (write `./auto` for a file of that name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImatrixArg {
    /// `--imatrix auto`: computed from calibration text (only `g4q convert` can).
    Auto,
    File(PathBuf),
}

pub(super) fn parse_imatrix(s: &str) -> Result<ImatrixArg, String> {
    match s {
        "" => Err("give a file or `auto`".into()),
        "auto" => Ok(ImatrixArg::Auto),
        path => Ok(ImatrixArg::File(PathBuf::from(path))),
    }
}

/// What `--type` names: a llama.cpp file type, or one of the ONNX weight types that is not one
/// (`int4`, `int8`). `f32` and `f16` parse as file types and serve ONNX too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeArg {
    File(FileType),
    Onnx(OnnxType),
}

fn parse_type(s: &str) -> Result<TypeArg, String> {
    match s.parse::<FileType>() {
        Ok(f) => Ok(TypeArg::File(f)),
        Err(e) => OnnxType::parse(s).map(TypeArg::Onnx).ok_or(e),
    }
}

/// Why `g4q quantize` refuses `--imatrix auto`: the forward pass runs on checkpoints only.
const AUTO_NEEDS_CHECKPOINT: &str =
    "--imatrix auto needs a checkpoint to run: use it with g4q convert and --data";

/// The file type, the mix options and the importance matrix with the name recorded for it.
pub type Resolved = (FileType, MixOptions, Option<(Imatrix, String)>);

fn ggml_type(flag: &str, s: &str) -> anyhow::Result<GgmlType> {
    let ty: GgmlType = s.parse().map_err(|e| usage(format!("{flag}: {e}")))?;
    if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8K) {
        return Err(usage(format!(
            "{flag}: {ty} is an activation format; it cannot be stored in a file"
        )));
    }
    Ok(ty)
}

impl MixArgs {
    /// The importance matrix file named by `--imatrix`, if any (an input the outputs must not
    /// overwrite).
    pub fn imatrix_file(&self) -> Option<&Path> {
        match &self.imatrix {
            Some(ImatrixArg::File(p)) => Some(p),
            _ => None,
        }
    }

    /// The `--type` given, or the usage error naming what needs it.
    pub fn required_ftype(&self) -> anyhow::Result<FileType> {
        match self.ftype {
            Some(TypeArg::File(f)) => Ok(f),
            Some(TypeArg::Onnx(t)) => Err(usage(format!(
                "--type {}: an ONNX weight type; GGUF takes a llama.cpp type (or use --format onnx)",
                t.name()
            ))),
            None => Err(usage("--type is required (except with --format awq)")),
        }
    }

    /// The `--type` of an ONNX release (f32, f16, int8 or int4), or the usage error.
    pub fn onnx_type(&self) -> anyhow::Result<OnnxType> {
        match self.ftype {
            Some(TypeArg::Onnx(t)) => Ok(t),
            Some(TypeArg::File(FileType::AllF32)) => Ok(OnnxType::F32),
            Some(TypeArg::File(FileType::F16)) => Ok(OnnxType::F16),
            Some(TypeArg::File(f)) => Err(usage(format!(
                "--format onnx: --type {f} is a GGUF type (expected f32, f16, int8 or int4)"
            ))),
            None => Err(usage(
                "--format onnx: --type is required (f32, f16, int8 or int4)",
            )),
        }
    }

    /// The file type, mix options and the importance matrix loaded from its file.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let imatrix = match &self.imatrix {
            None => None,
            Some(ImatrixArg::Auto) => return Err(usage(AUTO_NEEDS_CHECKPOINT)),
            Some(ImatrixArg::File(p)) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some((Imatrix::read(p)?, name))
            }
        };
        self.resolve_with(imatrix)
    }

    /// The file type and mix options for an importance matrix the caller already has (or none),
    /// recorded under the given name.
    pub fn resolve_with(&self, imatrix: Option<(Imatrix, String)>) -> anyhow::Result<Resolved> {
        let ftype = self.required_ftype()?;
        let mut overrides = Vec::new();
        for spec in &self.tensor_type {
            let (pattern, ty) = spec
                .rsplit_once('=')
                .ok_or_else(|| usage(format!("--tensor-type '{spec}' is not REGEX=TYPE")))?;
            let re =
                Regex::new(pattern).map_err(|e| usage(format!("--tensor-type '{spec}': {e}")))?;
            overrides.push((re, ggml_type("--tensor-type", ty)?));
        }
        let token_embedding_type = self
            .token_embedding_type
            .as_deref()
            .map(|t| ggml_type("--token-embedding-type", t))
            .transpose()?;
        let output_tensor_type = self
            .output_tensor_type
            .as_deref()
            .map(|t| ggml_type("--output-tensor-type", t))
            .transpose()?;
        let mix = MixOptions {
            pure: self.pure,
            has_imatrix: imatrix.is_some(),
            overrides,
            token_embedding_type,
            output_tensor_type,
            intermediate: None,
        };
        Ok((ftype, mix, imatrix))
    }
}

/// Prints a plan as a table (or JSON): each tensor's type and size, the total and bits per weight.
pub fn print_plan(rows: &[PlanRow], ftype: FileType, as_json: bool) {
    let params: u64 = rows
        .iter()
        .map(|r| r.tensor.shape.iter().product::<usize>() as u64)
        .sum();
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    let bpw = if params > 0 {
        bytes as f64 * 8.0 / params as f64
    } else {
        0.0
    };
    if as_json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.tensor.gguf_name,
                    "shape": r.tensor.shape,
                    "type": r.choice.ty.name(),
                    "fallback_from": r.choice.fallback_from.map(|t| t.name()),
                    "imatrix": r.weighted,
                    "bytes": r.bytes,
                })
            })
            .collect();
        let doc = json!({"file_type": ftype.name(), "parameters": params, "bytes": bytes, "bits_per_weight": bpw, "tensors": tensors});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "{:<40} {:>20} {:>8} {:>12}",
        "tensor", "shape", "type", "bytes"
    );
    for r in rows {
        let shape = format!("{:?}", r.tensor.shape);
        let ty = match r.choice.fallback_from {
            Some(from) => format!("{} (<{})", r.choice.ty.name(), from.name()),
            None => r.choice.ty.name().to_string(),
        };
        let mark = if r.weighted { " imatrix" } else { "" };
        println!(
            "{:<40} {:>20} {:>8} {:>12}{mark}",
            r.tensor.gguf_name, shape, ty, r.bytes
        );
    }
    println!(
        "{} tensors, {params} parameters, {bytes} bytes ({:.2} MiB), {bpw:.3} bits per weight ({})",
        rows.len(),
        bytes as f64 / (1 << 20) as f64,
        ftype.name()
    );
}
