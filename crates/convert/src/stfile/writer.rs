//! The one safetensors writer: the header is planned from names, dtypes and shapes alone, then
//! the tensors' bytes stream in, in the planned order, so memory holds only what the caller is
//! writing. The layout is the `safetensors` crate's: an 8-byte little-endian header length, the
//! compact JSON header (an optional `__metadata__` first, then each tensor's `dtype`, `shape`
//! and `data_offsets` in order) padded with spaces to a multiple of 8, then the data.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::dtype_size;
use crate::error::{ConvertError, Result};

/// One tensor of a safetensors file being planned.
#[derive(Clone, Debug)]
pub struct StEntry {
    pub name: String,
    /// A safetensors dtype name (`F32`, `BF16`, `I32`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
}

impl StEntry {
    pub fn new(name: impl Into<String>, dtype: impl Into<String>, shape: Vec<usize>) -> StEntry {
        StEntry {
            name: name.into(),
            dtype: dtype.into(),
            shape,
        }
    }
}

/// The encoded header of `entries` (`metadata` first when given) and each entry's byte size.
pub fn encode_header(
    file: &Path,
    metadata: Option<&Map<String, Value>>,
    entries: &[StEntry],
) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut header = Map::new();
    if let Some(m) = metadata {
        header.insert("__metadata__".into(), Value::Object(m.clone()));
    }
    let mut sizes = Vec::with_capacity(entries.len());
    let mut offset = 0u64;
    for e in entries {
        let esize = dtype_size(&e.dtype).ok_or_else(|| {
            ConvertError::tensor(file, &e.name, format!("unknown dtype '{}'", e.dtype))
        })?;
        let bytes = e
            .shape
            .iter()
            .try_fold(esize as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| ConvertError::tensor(file, &e.name, "tensor size overflows"))?;
        let end = offset
            .checked_add(bytes)
            .ok_or_else(|| ConvertError::tensor(file, &e.name, "file size overflows"))?;
        if header
            .insert(
                e.name.clone(),
                json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}),
            )
            .is_some()
        {
            return Err(ConvertError::tensor(file, &e.name, "planned twice"));
        }
        sizes.push(bytes);
        offset = end;
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("JSON value serialises");
    // Spaces pad the header so the data starts 8-byte aligned, as the `safetensors` crate does.
    head.resize(head.len().next_multiple_of(8), b' ');
    Ok((head, sizes))
}

/// Streams a safetensors file into `out` (usually an [`crate::output::OutputFile`]).
pub struct StWriter<W: Write> {
    file: PathBuf,
    out: W,
    entries: Vec<StEntry>,
    sizes: Vec<u64>,
    /// The tensor being written and how many of its bytes came so far.
    next: usize,
    done: u64,
}

impl<W: Write> StWriter<W> {
    /// Writes the header of `entries` to `out`; `file` names the target in errors.
    pub fn new(
        file: &Path,
        mut out: W,
        metadata: Option<&Map<String, Value>>,
        entries: Vec<StEntry>,
    ) -> Result<StWriter<W>> {
        let (head, sizes) = encode_header(file, metadata, &entries)?;
        let io = |e| ConvertError::io(file, e);
        out.write_all(&(head.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&head).map_err(io)?;
        let mut w = StWriter {
            file: file.to_path_buf(),
            out,
            entries,
            sizes,
            next: 0,
            done: 0,
        };
        w.skip_empty();
        Ok(w)
    }

    /// Bytes of tensor data the file holds when complete.
    pub fn data_len(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// Moves past tensors with no bytes.
    fn skip_empty(&mut self) {
        while self.next < self.sizes.len() && self.done == self.sizes[self.next] {
            self.next += 1;
            self.done = 0;
        }
    }

    /// Appends `bytes` to the data: the rest of the current tensor and any following ones.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let Some(&size) = self.sizes.get(self.next) else {
                return Err(ConvertError::format(
                    &self.file,
                    format!("{} bytes more than the planned tensors hold", bytes.len()),
                ));
            };
            let take = (size - self.done).min(bytes.len() as u64) as usize;
            self.out
                .write_all(&bytes[..take])
                .map_err(|e| ConvertError::io(&self.file, e))?;
            self.done += take as u64;
            bytes = &bytes[take..];
            self.skip_empty();
        }
        Ok(())
    }

    /// Writes the whole next tensor, which must be `bytes.len()` bytes.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(e) = self.entries.get(self.next) {
            let size = self.sizes[self.next];
            if self.done != 0 || bytes.len() as u64 != size {
                return Err(ConvertError::tensor(
                    &self.file,
                    &e.name,
                    format!("{} bytes given, {size} planned", bytes.len()),
                ));
            }
        }
        self.write(bytes)
    }

    /// Checks every planned byte was written; returns the output.
    pub fn finish(self) -> Result<W> {
        if let Some(e) = self.entries.get(self.next) {
            return Err(ConvertError::tensor(
                &self.file,
                &e.name,
                "never written in full",
            ));
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_both_readers() {
        let path = Path::new("mem.safetensors");
        let mut meta = Map::new();
        meta.insert("format".into(), json!("pt"));
        let entries = vec![
            StEntry::new("a", "F32", vec![2, 2]),
            StEntry::new("empty", "BF16", vec![0]),
            StEntry::new("b", "I64", vec![1]),
        ];
        let mut w = StWriter::new(path, Vec::new(), Some(&meta), entries).unwrap();
        w.write(&[1u8; 10]).unwrap();
        w.write(&[2u8; 14]).unwrap(); // ends `a`, skips `empty`, fills `b`
        let bytes = w.finish().unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("a").unwrap().data(),
            [&[1u8; 10][..], &[2; 6]].concat()
        );
        assert_eq!(st.tensor("b").unwrap().data(), [2u8; 8]);
        let ours = super::super::parse_header(path, &bytes).unwrap();
        let names: Vec<&str> = ours.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "empty", "b"]);
        println!("checked 3 tensors");
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let path = Path::new("mem.safetensors");
        let plan = || vec![StEntry::new("a", "F32", vec![2])];
        let mut w = StWriter::new(path, Vec::new(), None, plan()).unwrap();
        assert!(w.write_tensor(&[0u8; 7]).is_err());
        assert!(w.write(&[0u8; 9]).is_err());
        let mut w = StWriter::new(path, Vec::new(), None, plan()).unwrap();
        w.write(&[0u8; 4]).unwrap();
        assert!(w.finish().is_err());
        assert!(StWriter::new(
            path,
            Vec::new(),
            None,
            vec![StEntry::new("x", "Q4", vec![1])]
        )
        .is_err());
        println!("checked 4 misuses");
    }
}
