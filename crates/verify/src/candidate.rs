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
    if path.is_dir() {
        return Ok(fingerprint_with_members(path, |_| false)?.0);
    }
    let mut h = Sha256::new();
    hash_into(path, &mut [&mut h])?;
    Ok(hex(&h.finalize()))
}

/// One file of a folder with its own sha256 and size.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberHash {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// [`fingerprint`] of the folder `dir`, and the sha256 and size of each of its files whose
/// name `list` accepts (name order), reading every byte once: a release records both for a
/// checkpoint of tens of gigabytes.
pub fn fingerprint_with_members(
    dir: &Path,
    list: impl Fn(&str) -> bool,
) -> Result<(String, Vec<MemberHash>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut folder = Sha256::new();
    let mut members = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_fingerprint = matches!(
            f.extension().and_then(|e| e.to_str()),
            Some("json" | "safetensors" | "onnx" | "data")
        );
        let listed = list(&name);
        if in_fingerprint {
            folder.update(name.as_bytes());
            folder.update([0u8]);
        }
        let mut own = Sha256::new();
        let bytes = match (in_fingerprint, listed) {
            (true, true) => hash_into(&f, &mut [&mut folder, &mut own])?,
            (true, false) => hash_into(&f, &mut [&mut folder])?,
            (false, true) => hash_into(&f, &mut [&mut own])?,
            (false, false) => continue,
        };
        if listed {
            members.push(MemberHash {
                name,
                sha256: hex(&own.finalize()),
                bytes,
            });
        }
    }
    Ok((hex(&folder.finalize()), members))
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

/// Feeds the bytes of `path` to every hasher of `hs`; returns how many there were.
fn hash_into(path: &Path, hs: &mut [&mut Sha256]) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Ok(total);
        }
        for h in hs.iter_mut() {
            h.update(&buf[..n]);
        }
        total += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(path: &Path, source: std::io::Error) -> VerifyError {
    VerifyError::Input(format!("reading {}: {source}", path.display()))
}
