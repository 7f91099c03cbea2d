//! Safetensors, read and written in one place: [`StFile`] maps a file and checks its header
//! defensively; [`writer::StWriter`] streams one out, header first, tensor by tensor.
//!
//! The files read are untrusted: the header size is bounded before anything is read or
//! allocated, the header is parsed into compact typed entries (memory a small multiple of its
//! size, ranks bounded), every length and offset is checked against the file size before it is
//! used, and each failure becomes one error naming the file (and the tensor). The checks include
//! every rule of the `safetensors` crate's parser (the tensors tile the data exactly, metadata is
//! text), so g4q never accepts a file the rest of the ecosystem would refuse; the fuzz test holds
//! the two parsers to that.

pub mod writer;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{ConvertError, Result};

/// Same bound as the `safetensors` crate: a header larger than this is corrupt, not a model.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Most dimensions a tensor's shape may have; more is a corrupt header, not a model.
pub const MAX_RANK: usize = 16;

/// One tensor entry of a header, with offsets made absolute within the file.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    /// The header's dtype string (any safetensors dtype; the catalogue decides what it accepts).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// An open, mmapped safetensors file and its tensor entries in header order.
pub struct StFile {
    pub(crate) path: PathBuf,
    pub(crate) mmap: Mmap,
    pub(crate) tensors: Vec<RawTensor>,
}

/// Bytes per element of every safetensors dtype; `None` for an unknown dtype string.
pub fn dtype_size(dtype: &str) -> Option<usize> {
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
        let meta = file.metadata().map_err(|e| ConvertError::io(path, e))?;
        let bad = |m: String| ConvertError::format(path, m);
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        let size = meta.len();
        if size < 8 {
            return Err(bad(format!(
                "truncated: {size} bytes is too short for a safetensors header"
            )));
        }
        // SAFETY: the mapping is read-only and g4q never writes to its inputs. Another process
        // truncating the file while it is mapped would fault (SIGBUS), as with any mmap-based
        // reader: the README asks that inputs do not change during a run.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::io(path, e))?;
        let tensors = parse_header(path, &mmap)?;
        Ok(StFile {
            path: path.to_path_buf(),
            mmap,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor entries in header order.
    pub fn tensors(&self) -> &[RawTensor] {
        &self.tensors
    }

    /// The stored bytes of `t`, an entry of this file.
    pub fn bytes(&self, t: &RawTensor) -> &[u8] {
        &self.mmap[t.start..t.end]
    }
}

/// Checks and parses the header of the safetensors bytes `bytes` (a whole file) read from
/// `path`: the tensor entries, offsets absolute, in header order.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let bad = |m: String| ConvertError::format(path, m);
    // Sizes below come from the bytes themselves, so a file that changed since its size was
    // read cannot make an offset check disagree with the bytes actually mapped.
    let size = bytes.len() as u64;
    if size < 8 {
        return Err(bad(format!(
            "truncated: {size} bytes is too short for a safetensors header"
        )));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
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
    // Both fit in usize: they are at most the size of the bytes given.
    let data_start = data_start as usize;
    let data_len = bytes.len() - data_start;
    let entries = parse_entries(path, &bytes[8..data_start])?;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        let t = check_entry(name, entry, data_len)
            .map_err(|(name, m)| ConvertError::tensor(path, name, m))?;
        tensors.push(RawTensor {
            start: data_start + t.start,
            end: data_start + t.end,
            ..t
        });
    }
    check_layout(path, &tensors, data_start, bytes.len())?;
    Ok(tensors)
}

/// Checks that the tensors' bytes tile the data section exactly, as the `safetensors` crate
/// requires: no overlap, no gap, nothing after the last tensor.
fn check_layout(path: &Path, tensors: &[RawTensor], data_start: usize, end: usize) -> Result<()> {
    let mut by_start: Vec<&RawTensor> = tensors.iter().collect();
    by_start.sort_by_key(|t| (t.start, t.end));
    let mut expected = data_start;
    let mut previous: Option<&RawTensor> = None;
    for t in by_start {
        if t.start < expected {
            let other = previous.map_or("", |p| p.name.as_str());
            return Err(ConvertError::tensor(
                path,
                &t.name,
                format!("its bytes overlap those of tensor '{other}' (corrupt header offsets)"),
            ));
        }
        if t.start > expected {
            return Err(ConvertError::tensor(
                path,
                &t.name,
                format!(
                    "{} unused bytes before its data (corrupt header offsets)",
                    t.start - expected
                ),
            ));
        }
        expected = t.end;
        previous = Some(t);
    }
    if expected != end {
        return Err(ConvertError::format(
            path,
            format!(
                "{} bytes after the last tensor's data (corrupt header offsets or trailing bytes)",
                end - expected
            ),
        ));
    }
    Ok(())
}

/// One header entry as stored: compact, with the shape and offsets bounded in length.
#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Bounded<MAX_RANK>,
    data_offsets: Bounded<2>,
}

/// A list of at most `N` non-negative integers; a longer one is an error, not an allocation.
struct Bounded<const N: usize>(Vec<u64>);

impl<'de, const N: usize> Deserialize<'de> for Bounded<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = Bounded<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {N} non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<u64>()? {
                    if v.len() == N {
                        return Err(de::Error::custom(format!("more than {N} values")));
                    }
                    v.push(x);
                }
                Ok(Bounded(v))
            }
        }
        d.deserialize_seq(V::<N>)
    }
}

/// Parses the header JSON into `(name, entry)` pairs in header order, `__metadata__` skipped;
/// a malformed entry's error names its tensor, and a name given twice is an error.
fn parse_entries(path: &Path, json: &[u8]) -> Result<Vec<(String, Entry)>> {
    struct Entries<'a> {
        current: &'a RefCell<Option<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Entries<'_> {
        type Value = Vec<(String, Entry)>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = Vec<(String, Entry)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object of tensor entries")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                *self.current.borrow_mut() = Some(name.clone());
                if name == "__metadata__" {
                    // Free-form text pairs, as the `safetensors` crate requires.
                    map.next_value::<HashMap<String, String>>()?;
                    continue;
                }
                let entry = map.next_value::<Entry>()?;
                if !seen.insert(name.clone()) {
                    return Err(de::Error::custom("appears twice in the header"));
                }
                *self.current.borrow_mut() = None;
                out.push((name, entry));
            }
            Ok(out)
        }
    }
    let current = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = Entries { current: &current }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match current.into_inner() {
        Some(name) if e.is_data() => ConvertError::tensor(path, name, format!("header entry: {e}")),
        _ if e.is_data() => ConvertError::format(
            path,
            format!("header is not a JSON object of tensor entries: {e}"),
        ),
        _ => ConvertError::format(path, format!("header is not valid JSON: {e}")),
    })
}

/// Checks one header entry; offsets are relative to the data section of `data_len` bytes.
/// An error comes back with the entry's name.
fn check_entry(
    name: String,
    entry: Entry,
    data_len: usize,
) -> std::result::Result<RawTensor, (String, String)> {
    match check_fields(&entry, data_len) {
        Ok((shape, start, end)) => Ok(RawTensor {
            name,
            dtype: entry.dtype,
            shape,
            start,
            end,
        }),
        Err(m) => Err((name, m)),
    }
}

fn check_fields(
    entry: &Entry,
    data_len: usize,
) -> std::result::Result<(Vec<usize>, usize, usize), String> {
    let dtype = &entry.dtype;
    let esize = dtype_size(dtype).ok_or_else(|| format!("unknown dtype '{dtype}'"))?;
    let shape = entry
        .shape
        .0
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or("shape holds a dimension too large for this machine")?;
    let [start, end] = entry.data_offsets.0[..] else {
        return Err("header entry has no [start, end] data_offsets".into());
    };
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return Err("data_offsets too large for this machine".into());
    };
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
    Ok((shape, start, end))
}
