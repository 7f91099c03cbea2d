//! One safetensors file, mmapped, with its header checked defensively.
//!
//! The files are untrusted: every length and offset is checked against the file size before it
//! is used, and each failure becomes one error naming the file (and the tensor). After our own
//! checks, the `safetensors` crate's parser validates the header as well, so g4q never accepts a
//! file that the rest of the ecosystem would refuse.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use crate::error::{ConvertError, Result};

/// Same bound as the `safetensors` crate: a header larger than this is corrupt, not a model.
pub(crate) const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor entry of a header, with offsets made absolute within the file.
#[derive(Clone, Debug)]
pub(crate) struct RawTensor {
    pub name: String,
    /// The header's dtype string (any safetensors dtype; the catalogue decides what it accepts).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// An open, mmapped safetensors file and its tensor entries in header order.
pub(crate) struct StFile {
    pub path: PathBuf,
    pub mmap: Mmap,
    pub tensors: Vec<RawTensor>,
}

/// Bytes per element of every safetensors dtype; `None` for an unknown dtype string.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

impl StFile {
    /// Opens and mmaps `path`, validating the header against the file's size.
    pub fn open(path: &Path) -> Result<StFile> {
        let file = File::open(path).map_err(|e| ConvertError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| ConvertError::io(path, e))?
            .len();
        let bad = |m: String| ConvertError::format(path, m);
        if size < 8 {
            return Err(bad(format!(
                "truncated: {size} bytes is too short for a safetensors header"
            )));
        }
        // SAFETY: the mapping is read-only; g4q never writes to checkpoint files. Another process
        // truncating the file while it is mapped would fault, as with any mmap-based reader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::io(path, e))?;
        // Sizes below come from the mapping itself, so a file that changed since `metadata`
        // cannot make an offset check disagree with the bytes actually mapped.
        let size = mmap.len() as u64;
        if size < 8 {
            return Err(bad(format!(
                "truncated: {size} bytes is too short for a safetensors header"
            )));
        }
        let header_len = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes"));
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "header length {header_len} bytes is implausibly large (limit {MAX_HEADER_BYTES}): not a safetensors file or corrupt"
            )));
        }
        let data_start = 8 + header_len;
        if data_start > size {
            return Err(bad(format!(
                "header length {header_len} runs past the end of the file ({size} bytes): truncated"
            )));
        }
        // Both fit in usize: they are at most the size of a file we mapped.
        let data_start = data_start as usize;
        let data_len = mmap.len() - data_start;
        let header: Value = serde_json::from_slice(&mmap[8..data_start])
            .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
        let obj = header
            .as_object()
            .ok_or_else(|| bad("header is not a JSON object".into()))?;

        let mut tensors = Vec::with_capacity(obj.len());
        for (name, entry) in obj {
            if name == "__metadata__" {
                continue;
            }
            let t = parse_entry(name, entry, data_len)
                .map_err(|m| ConvertError::tensor(path, name, m))?;
            tensors.push(RawTensor {
                start: data_start + t.start,
                end: data_start + t.end,
                ..t
            });
        }
        let mut by_start: Vec<&RawTensor> = tensors.iter().collect();
        by_start.sort_by_key(|t| (t.start, t.end));
        for pair in by_start.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(ConvertError::tensor(
                    path,
                    &pair[1].name,
                    format!(
                        "its bytes overlap those of tensor '{}' (corrupt header offsets)",
                        pair[0].name
                    ),
                ));
            }
        }
        // A second opinion from the reference parser (gaps, trailing bytes, ...).
        safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| bad(format!("rejected by the safetensors parser: {e:?}")))?;
        Ok(StFile {
            path: path.to_path_buf(),
            mmap,
            tensors,
        })
    }
}

/// Parses one header entry; offsets are relative to the data section of `data_len` bytes.
fn parse_entry(
    name: &str,
    entry: &Value,
    data_len: usize,
) -> std::result::Result<RawTensor, String> {
    let dtype = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("header entry has no dtype string")?;
    let esize = dtype_size(dtype).ok_or_else(|| format!("unknown dtype '{dtype}'"))?;
    let shape = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("header entry has no shape list")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or("shape holds something other than non-negative integers")?;
    let offsets = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or("header entry has no [start, end] data_offsets")?;
    let off = |i: usize| {
        offsets[i]
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or("data_offsets hold something other than non-negative integers")
    };
    let (start, end) = (off(0)?, off(1)?);
    if start > end {
        return Err(format!("data_offsets [{start}, {end}] run backwards"));
    }
    if end > data_len {
        return Err(format!(
            "data_offsets [{start}, {end}] run past the end of the data ({data_len} bytes): file truncated or header corrupt"
        ));
    }
    let nbytes = shape
        .iter()
        .try_fold(esize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    if nbytes != end - start {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {nbytes} bytes but data_offsets [{start}, {end}] span {}",
            end - start
        ));
    }
    Ok(RawTensor {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        start,
        end,
    })
}
