//! Writes f32 tensors (logits, hidden states) as a safetensors file through convert's one
//! safetensors writer and one atomic output file: a failed run never leaves a partial file.

use std::io::{BufWriter, Write};
use std::path::Path;

use convert::output::OutputFile;
use convert::stfile::writer::{StEntry, StWriter};

use crate::error::{Result, VerifyError};

/// One named f32 tensor to write.
pub struct OutTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// Writes `tensors` (in the given order) to `path` as safetensors.
pub fn write_safetensors(path: &Path, tensors: &[OutTensor<'_>]) -> Result<()> {
    let mut entries = Vec::with_capacity(tensors.len());
    for t in tensors {
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(t.data.len()) {
            return Err(VerifyError::Input(format!(
                "tensor '{}' has {} values for shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            )));
        }
        entries.push(StEntry::new(t.name.clone(), "F32", t.shape.clone()));
    }
    let out = BufWriter::with_capacity(1 << 20, OutputFile::create(path)?);
    let mut w = StWriter::new(path, out, None, entries)?;
    for t in tensors {
        for chunk in t.data.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write(&bytes)?;
        }
    }
    let mut out = w.finish()?;
    out.flush().map_err(|e| io_err(path, e))?;
    out.into_inner()
        .map_err(|e| io_err(path, e.into_error()))?
        .commit()?;
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> VerifyError {
    VerifyError::Io {
        file: path.display().to_string(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.safetensors");
        let a = [1.0f32, -2.0, 3.5, 0.0, 7.0, 8.0];
        let b = [9.0f32];
        write_safetensors(
            &path,
            &[
                OutTensor {
                    name: "logits".into(),
                    shape: vec![2, 3],
                    data: &a,
                },
                OutTensor {
                    name: "hidden.0".into(),
                    shape: vec![1, 1],
                    data: &b,
                },
            ],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("logits").unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        let v: Vec<f32> = t
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(v, a);
        assert_eq!(st.tensor("hidden.0").unwrap().data(), &9.0f32.to_le_bytes());
        // no temporary left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
