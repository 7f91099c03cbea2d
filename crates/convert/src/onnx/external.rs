//! External tensor data: the bytes of large initializers go to one side file
//! (`model.onnx.data`) instead of the protobuf, as the ONNX spec's external-data convention
//! defines (`data_location = EXTERNAL`, `external_data` entries `location`, `offset`, `length`).
//! A protobuf message may not exceed 2 GiB, and keeping the weights out of it lets the writer
//! stream them: each tensor is appended as soon as it is made and then dropped, so memory holds
//! one tensor at a time while the graph (a few kilobytes per layer) grows beside it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{StringStringEntryProto, TensorProto};

use crate::error::{ConvertError, Result};

/// Tensors of at least this many bytes go to the data file; smaller ones (norm weights, shape
/// constants) stay inline. The onnx Python package's `save_model` uses the same 1 KiB default.
pub const EXTERNAL_MIN_BYTES: usize = 1024;

/// Every external tensor starts at a multiple of this, so a reader that maps the file gets
/// aligned slices.
pub const ALIGN: u64 = 64;

/// The data file being written (or, for a dry run, only counted).
pub struct ExternalData {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    /// File name as written into each tensor's `location` (relative to the model file).
    location: String,
    offset: u64,
}

impl ExternalData {
    /// Creates `dir/location`.
    pub fn create(dir: &Path, location: &str) -> Result<Self> {
        let path = dir.join(location);
        let f = File::create(&path).map_err(|e| ConvertError::io(&path, e))?;
        Ok(ExternalData {
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            path,
            location: location.to_string(),
            offset: 0,
        })
    }

    /// A sink that writes nothing and only counts (what `--dry-run` reports).
    pub fn counting(location: &str) -> Self {
        ExternalData {
            out: None,
            path: PathBuf::from(location),
            location: location.to_string(),
            offset: 0,
        }
    }

    /// Bytes written so far (padding included).
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Appends `bytes` at the next aligned offset and fills in `t`'s external-data fields.
    pub fn append(&mut self, t: &mut TensorProto, bytes: &[u8]) -> Result<()> {
        let pad = self.offset.next_multiple_of(ALIGN) - self.offset;
        self.write(&[0u8; ALIGN as usize][..pad as usize])?;
        let offset = self.offset;
        self.write(bytes)?;
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: k.to_string(),
            value: v,
            ..Default::default()
        };
        t.external_data = vec![
            entry("location", self.location.clone()),
            entry("offset", offset.to_string()),
            entry("length", bytes.len().to_string()),
        ];
        t.data_location = DataLocation::EXTERNAL.into();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(bytes)
                .map_err(|e| ConvertError::io(&self.path, e))?;
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the file.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let Some(out) = self.out else {
            return Ok(());
        };
        let f = out
            .into_inner()
            .map_err(|e| ConvertError::io(&path, e.into_error()))?;
        f.sync_all().map_err(|e| ConvertError::io(&path, e))
    }
}
