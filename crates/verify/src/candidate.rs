//! Opening what `g4q verify` compares: a model folder (safetensors, any dtype) or a GGUF file,
//! both as a [`Weights`] source for the same forward pass; and fingerprints (sha256) of the
//! inputs, so a report says exactly which bytes produced its figures.

use std::io::Read;
use std::path::{Path, PathBuf};

use convert::Checkpoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::awq_weights::AwqWeights;
use crate::error::{Result, VerifyError};
use crate::gguf_weights::{GgufMath, GgufWeights};
use crate::onnx_weights::OnnxWeights;
use crate::weights::Weights;

/// An opened model: the weights and what kind of file they came from.
pub enum Opened {
    Safetensors(Checkpoint),
    Gguf(GgufWeights),
    /// An AWQ int4 release folder (compressed-tensors pack-quantized).
    Awq(AwqWeights),
    /// An ONNX release folder (model.onnx + model.onnx.data).
    Onnx(OnnxWeights),
}

impl Opened {
    /// Opens `path`: a folder is a safetensors checkpoint (or an AWQ or ONNX release), a file
    /// a GGUF release whose products are computed as `math` says.
    pub fn open(path: &Path, math: GgufMath) -> Result<Self> {
        match Opened::kind_of(path)? {
            "onnx" => Ok(Opened::Onnx(OnnxWeights::open(path)?)),
            "awq" => Ok(Opened::Awq(AwqWeights::open(path)?)),
            "safetensors" => Ok(Opened::Safetensors(Checkpoint::open(path)?)),
            _ => Ok(Opened::Gguf(GgufWeights::open(path, math)?)),
        }
    }

    /// What [`Opened::open`] reads `path` as: its [`Opened::kind`] once opened.
    pub fn kind_of(path: &Path) -> Result<&'static str> {
        if path.is_dir() && OnnxWeights::is_release(path) {
            Ok("onnx")
        } else if path.is_dir() && AwqWeights::is_release(path) {
            Ok("awq")
        } else if path.is_dir() {
            Ok("safetensors")
        } else if path.is_file() {
            Ok("gguf")
        } else {
            Err(VerifyError::Input(format!(
                "{}: no such file or folder",
                path.display()
            )))
        }
    }

    /// The weights, for the forward pass.
    pub fn weights(&self) -> &dyn Weights {
        match self {
            Opened::Safetensors(c) => c,
            Opened::Gguf(g) => g,
            Opened::Awq(a) => a,
            Opened::Onnx(o) => o,
        }
    }

    /// `safetensors` or `gguf`.
    pub fn kind(&self) -> &'static str {
        match self {
            Opened::Safetensors(_) => "safetensors",
            Opened::Gguf(_) => "gguf",
            Opened::Awq(_) => "awq",
            Opened::Onnx(_) => "onnx",
        }
    }
}

/// An input of the run as the report records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    /// `safetensors`, `gguf`, `text`, `tokens` or `bundled`.
    pub kind: String,
    /// sha256 of a file; for a folder, of each file's name and bytes in name order (the
    /// files the checkpoint is made of: `*.json`, `*.safetensors`, and an ONNX release's
    /// `model.onnx` and `model.onnx.data`).
    pub sha256: String,
}

/// sha256 (hex) of a file, or of a model folder's `*.json` and `*.safetensors` files.
pub fn fingerprint(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "safetensors" | "onnx" | "data")
                    )
            })
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            h.update(name.unwrap_or_default().as_bytes());
            h.update([0u8]);
            hash_file(&f, &mut h)?;
        }
    } else {
        hash_file(path, &mut h)?;
    }
    Ok(hex(&h.finalize()))
}

/// sha256 (hex) of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of token ids as little-endian u32: identifies the exact evaluation tokens, so a
/// baseline comparison can tell whether both runs saw the same data.
pub fn sha256_tokens(chunks: &[Vec<u32>]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        for id in c {
            h.update(id.to_le_bytes());
        }
    }
    hex(&h.finalize())
}

fn hash_file(path: &Path, h: &mut Sha256) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(path: &Path, source: std::io::Error) -> VerifyError {
    VerifyError::Input(format!("reading {}: {source}", path.display()))
}
