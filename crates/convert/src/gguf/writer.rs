//! A streaming GGUF writer. The header (metadata and every tensor's name, shape, type and
//! offset) is written first, because offsets are known from shapes alone; tensor data then
//! follows one tensor at a time, so memory holds at most the tensor being written. Output goes
//! to a temporary file beside the target and is renamed into place only by [`GgufWriter::finish`];
//! a writer dropped before that removes the temporary file, so no partial file is ever left.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::reader::pad_to;
use super::value::{Array, Metadata, Value};
use super::{TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, MAX_NAME_BYTES};
use crate::error::{ConvertError, Result};
use crate::output::OutputFile;

/// Encodes the header of a GGUF v3 file: magic, counts, metadata, tensor infos and the padding
/// up to the data section. Tensor offsets are assigned here, contiguous with padding.
pub fn encode_header(
    metadata: &Metadata,
    tensors: &mut [TensorInfo],
    path: &Path,
) -> Result<Vec<u8>> {
    let alignment = alignment_of(metadata, path)?;
    let mut out = Vec::new();
    out.extend_from_slice(&GGUF_MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata.iter() {
        put_string(&mut out, key);
        out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for t in tensors.iter_mut() {
        if t.name.len() >= MAX_NAME_BYTES {
            return Err(ConvertError::tensor(
                path,
                &t.name,
                "name too long for GGUF (63 bytes at most)",
            ));
        }
        if t.dims.is_empty() || t.dims.len() > MAX_DIMS {
            return Err(ConvertError::tensor(
                path,
                &t.name,
                format!("{} dimensions", t.dims.len()),
            ));
        }
        let n_bytes = t.checked_n_bytes().ok_or_else(|| {
            ConvertError::tensor(
                path,
                &t.name,
                format!("shape {:?} does not fit type {}", t.dims, t.ty),
            )
        })?;
        t.offset = offset;
        put_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
        offset = pad_to(offset + n_bytes, alignment)
            .ok_or_else(|| ConvertError::tensor(path, &t.name, "offset overflows"))?;
    }
    let padded = pad_to(out.len() as u64, alignment).unwrap_or(out.len() as u64) as usize;
    out.resize(padded, 0);
    Ok(out)
}

fn alignment_of(metadata: &Metadata, path: &Path) -> Result<u64> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(v) => Err(ConvertError::format(
            path,
            format!("general.alignment {v} is not a power-of-two UINT32"),
        )),
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            match a {
                Array::U8(v) => out.extend_from_slice(v),
                Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
                Array::U16(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I16(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::U32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::Bool(v) => out.extend(v.iter().map(|&x| u8::from(x))),
                Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
                Array::U64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
    }
}

/// Writes a GGUF file tensor by tensor, in the order the tensor list was given.
pub struct GgufWriter {
    target: PathBuf,
    out: BufWriter<OutputFile>,
    tensors: Vec<TensorInfo>,
    next: usize,
    alignment: u64,
    written: u64,
    /// Bytes written so far of the tensor in progress.
    open_bytes: Option<u64>,
}

impl GgufWriter {
    /// Starts `path`: writes the header for `tensors` (whose offsets are assigned here).
    pub fn create(path: &Path, metadata: &Metadata, mut tensors: Vec<TensorInfo>) -> Result<Self> {
        let header = encode_header(metadata, &mut tensors, path)?;
        let alignment = alignment_of(metadata, path)?;
        let mut out = BufWriter::with_capacity(1 << 20, OutputFile::create(path)?);
        out.write_all(&header)
            .map_err(|e| ConvertError::io(path, e))?;
        Ok(GgufWriter {
            target: path.to_path_buf(),
            out,
            tensors,
            next: 0,
            alignment,
            written: 0,
            open_bytes: None,
        })
    }

    /// The infos of the tensors being written, with their assigned offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Writes the data of the next tensor; `name` must be that tensor and `data` its exact size.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.begin_tensor(name)?;
        self.write_data(data)?;
        self.end_tensor()
    }

    /// Starts the next tensor, whose bytes then come in pieces through [`Self::write_data`], so a
    /// tensor larger than memory can be converted in row chunks.
    pub fn begin_tensor(&mut self, name: &str) -> Result<()> {
        let Some(info) = self.tensors.get(self.next) else {
            return Err(ConvertError::tensor(
                &self.target,
                name,
                "more tensors written than declared",
            ));
        };
        if info.name != name {
            return Err(ConvertError::tensor(
                &self.target,
                name,
                format!("written out of order (expected '{}')", info.name),
            ));
        }
        if self.open_bytes.is_some() {
            return Err(ConvertError::tensor(
                &self.target,
                name,
                "previous tensor not finished",
            ));
        }
        self.open_bytes = Some(0);
        Ok(())
    }

    /// Appends bytes to the tensor started by [`Self::begin_tensor`].
    pub fn write_data(&mut self, data: &[u8]) -> Result<()> {
        let Some(done) = self.open_bytes else {
            return Err(ConvertError::format(
                &self.target,
                "tensor data written outside a tensor",
            ));
        };
        // begin_tensor checked that `next` names a declared tensor.
        let info = &self.tensors[self.next];
        let total = done + data.len() as u64;
        if total > info.n_bytes() {
            return Err(ConvertError::tensor(
                &self.target,
                &info.name,
                format!(
                    "{total} bytes given, {} expected for {} {:?}",
                    info.n_bytes(),
                    info.ty,
                    info.dims
                ),
            ));
        }
        self.out
            .write_all(data)
            .map_err(|e| ConvertError::io(&self.target, e))?;
        self.open_bytes = Some(total);
        Ok(())
    }

    /// Finishes the current tensor: checks its size and pads to the alignment.
    pub fn end_tensor(&mut self) -> Result<()> {
        let Some(done) = self.open_bytes.take() else {
            return Err(ConvertError::format(
                &self.target,
                "end_tensor without begin_tensor",
            ));
        };
        let info = &self.tensors[self.next];
        if done != info.n_bytes() {
            return Err(ConvertError::tensor(
                &self.target,
                &info.name,
                format!(
                    "{done} bytes given, {} expected for {} {:?}",
                    info.n_bytes(),
                    info.ty,
                    info.dims
                ),
            ));
        }
        let end = self.written + done;
        let padded = pad_to(end, self.alignment).unwrap_or(end);
        self.out
            .write_all(&vec![0u8; (padded - end) as usize])
            .map_err(|e| ConvertError::io(&self.target, e))?;
        self.written = padded;
        self.next += 1;
        Ok(())
    }

    /// Checks every tensor was written, flushes, syncs and renames the file into place.
    pub fn finish(self) -> Result<()> {
        if self.next != self.tensors.len() || self.open_bytes.is_some() {
            let missing = &self.tensors[self.next].name;
            return Err(ConvertError::tensor(&self.target, missing, "never written"));
        }
        let GgufWriter { out, target, .. } = self;
        out.into_inner()
            .map_err(|e| ConvertError::io(&target, e.into_error()))?
            .commit()
    }
}
