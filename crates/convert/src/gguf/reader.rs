//! A defensive GGUF reader. The file is untrusted: every count, length and offset is checked
//! against the bytes actually present before anything is allocated, and tensors must be laid
//! out as gguf.cpp requires (aligned, contiguous in info order, inside the file).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use kernels::GgmlType;
use memmap2::Mmap;

use super::value::{Array, Metadata, Value, ValueType};
use super::{TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, MAX_NAME_BYTES};
use crate::error::{cut, ConvertError, Result};

/// A parsed GGUF header: metadata, tensor infos and where the data section starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Byte offset of the data section from the start of the file.
    pub data_offset: u64,
    /// Position in `tensors` by name, so a lookup costs the same in a file of 200k tensors.
    index: HashMap<String, usize>,
}

impl Header {
    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
}

/// An open GGUF file: the header plus the file's bytes.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    header: Header,
}

/// The bytes of a GGUF file: memory-mapped from disk, or held in memory.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl GgufFile {
    /// Opens and validates `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| ConvertError::io(path, e))?;
        // SAFETY: the map is read-only; g4q never writes the files it reads while they are open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::io(path, e))?;
        let header = parse_header(&mmap, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            bytes: Bytes::Mapped(mmap),
            header,
        })
    }

    /// Validates a GGUF file held in memory; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let header = parse_header(&bytes, path)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The raw bytes of tensor `name` (bounds were checked when the file was opened).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let info = self
            .header
            .tensor(name)
            .ok_or_else(|| ConvertError::tensor(&self.path, name, "not in this GGUF file"))?;
        let start = (self.header.data_offset + info.offset) as usize;
        Ok(&self.bytes[start..start + info.n_bytes() as usize])
    }
}

/// Parses and validates the header of a GGUF file held in `bytes`. `path` names it in errors.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let magic = c.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(c.err("not a GGUF file (bad magic)"));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(c.err(format!("GGUF version {version} is not supported (2 or 3)")));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 32.
    if n_kv > (c.remaining() / 13) as u64 {
        return Err(c.err(format!(
            "metadata count {n_kv} exceeds what the file can hold"
        )));
    }
    // Duplicates are found through a hash set: a header of any size parses in linear time.
    let mut metadata = Metadata::new();
    let mut keys = HashSet::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        if key.is_empty() {
            return Err(c.err("empty metadata key"));
        }
        if !keys.insert(key.clone()) {
            return Err(c.err(format!("duplicate metadata key '{}'", cut(&key))));
        }
        let tag = c.u32("value type")?;
        let ty = ValueType::from_tag(tag)
            .ok_or_else(|| c.err(format!("key '{}': unknown value type {tag}", cut(&key))))?;
        let value = c.value(ty, &key)?;
        metadata.push_new(key, value);
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(c.err(format!(
                "general.alignment must be a power-of-two UINT32, got {}",
                cut(&v.to_string())
            )))
        }
    };
    if n_tensors > (c.remaining() / 32) as u64 {
        return Err(c.err(format!(
            "tensor count {n_tensors} exceeds what the file can hold"
        )));
    }
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut index = HashMap::with_capacity(n_tensors as usize);
    let mut expected_offset = 0u64;
    for i in 0..n_tensors as usize {
        let name = c.string("tensor name")?;
        if name.len() >= MAX_NAME_BYTES {
            return Err(c.err(format!(
                "tensor name '{}' is longer than {} bytes",
                cut(&name),
                MAX_NAME_BYTES - 1
            )));
        }
        if index.insert(name.clone(), i).is_some() {
            return Err(c.err(format!("duplicate tensor '{name}'")));
        }
        let n_dims = c.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(c.tensor_err(
                &name,
                format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let ne = c.u64("tensor dimension")?;
            if ne > i64::MAX as u64 {
                return Err(c.tensor_err(&name, "negative dimension"));
            }
            dims.push(ne);
        }
        let type_id = c.u32("tensor type")?;
        let ty = GgmlType::from_id(type_id)
            .ok_or_else(|| c.tensor_err(&name, format!("unsupported ggml type id {type_id}")))?;
        let offset = c.u64("tensor offset")?;
        let info = TensorInfo {
            name,
            dims,
            ty,
            offset,
        };
        let n_bytes = info.checked_n_bytes().ok_or_else(|| {
            c.tensor_err(
                &info.name,
                "shape does not fit its type's blocks or overflows",
            )
        })?;
        if offset != expected_offset {
            return Err(c.tensor_err(
                &info.name,
                format!("data offset {offset} is not the expected {expected_offset} (overlapping or out of order)"),
            ));
        }
        expected_offset = pad_to(
            offset
                .checked_add(n_bytes)
                .ok_or_else(|| c.tensor_err(&info.name, "offset overflows"))?,
            alignment,
        )
        .ok_or_else(|| c.tensor_err(&info.name, "offset overflows"))?;
        tensors.push(info);
    }
    let data_offset = pad_to(c.pos as u64, alignment).ok_or_else(|| c.err("header too large"))?;
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes()))
            .ok_or_else(|| c.tensor_err(&t.name, "data range overflows"))?;
        if end > file_len {
            return Err(c.tensor_err(
                &t.name,
                format!("data ends at byte {end}, past the end of the file ({file_len} bytes): truncated?"),
            ));
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        index,
    })
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn pad_to(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn err(&self, msg: impl Into<String>) -> ConvertError {
        ConvertError::format(
            self.path,
            format!("GGUF header at byte {}: {}", self.pos, msg.into()),
        )
    }

    fn tensor_err(&self, name: &str, msg: impl Into<String>) -> ConvertError {
        ConvertError::tensor(self.path, name, msg.into())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("file ends inside the {} (truncated?)", cut(what))));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "{} length {len} runs past the end of the file",
                cut(what)
            )));
        }
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.err(format!("{} is not UTF-8", cut(what))))
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(key)?),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Array => Value::Array(self.array_value(key)?),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        match self.array::<1>(key)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.err(format!(
                "key '{}': bool byte {b} is neither 0 nor 1",
                cut(key)
            ))),
        }
    }

    fn array_value(&mut self, key: &str) -> Result<Array> {
        let tag = self.u32(key)?;
        let ty = ValueType::from_tag(tag).ok_or_else(|| {
            self.err(format!(
                "key '{}': unknown array element type {tag}",
                cut(key)
            ))
        })?;
        let count = self.u64(key)?;
        let min_size = match ty {
            ValueType::Array => {
                return Err(self.err(format!("key '{}': nested arrays are not allowed", cut(key))))
            }
            ValueType::String => 8,
            t => t.scalar_size().unwrap_or(1),
        };
        if count > (self.remaining() / min_size) as u64 {
            return Err(self.err(format!(
                "key '{}': array of {count} elements runs past the end of the file",
                cut(key)
            )));
        }
        let n = count as usize;
        macro_rules! read_vec {
            ($variant:ident, $f:expr) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push($f(self)?);
                }
                Array::$variant(v)
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(n, key)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n, key)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => read_vec!(U16, |c: &mut Self| Ok::<_, ConvertError>(
                u16::from_le_bytes(c.array(key)?)
            )),
            ValueType::I16 => read_vec!(I16, |c: &mut Self| Ok::<_, ConvertError>(
                i16::from_le_bytes(c.array(key)?)
            )),
            ValueType::U32 => read_vec!(U32, |c: &mut Self| c.u32(key)),
            ValueType::I32 => read_vec!(I32, |c: &mut Self| Ok::<_, ConvertError>(
                i32::from_le_bytes(c.array(key)?)
            )),
            ValueType::F32 => read_vec!(F32, |c: &mut Self| Ok::<_, ConvertError>(
                f32::from_le_bytes(c.array(key)?)
            )),
            ValueType::Bool => read_vec!(Bool, |c: &mut Self| c.bool(key)),
            ValueType::String => read_vec!(String, |c: &mut Self| c.string(key)),
            ValueType::U64 => read_vec!(U64, |c: &mut Self| c.u64(key)),
            ValueType::I64 => read_vec!(I64, |c: &mut Self| Ok::<_, ConvertError>(
                i64::from_le_bytes(c.array(key)?)
            )),
            ValueType::F64 => read_vec!(F64, |c: &mut Self| Ok::<_, ConvertError>(
                f64::from_le_bytes(c.array(key)?)
            )),
            ValueType::Array => unreachable!("rejected above"),
        })
    }
}
