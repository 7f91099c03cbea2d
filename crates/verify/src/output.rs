//! Writes f32 tensors as a safetensors file, atomically: everything goes to a temporary file
//! beside the target, which is synced and renamed over it only when complete, so a failed run
//! never leaves a partial file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Result, VerifyError};

/// One named f32 tensor to write.
pub struct OutTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

fn io_err(path: &Path, e: std::io::Error) -> VerifyError {
    VerifyError::Io {
        file: path.display().to_string(),
        source: e,
    }
}

/// Writes `tensors` (in the given order) to `path` as safetensors.
pub fn write_safetensors(path: &Path, tensors: &[OutTensor<'_>]) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        let numel: usize = t.shape.iter().product();
        if numel != t.data.len() {
            return Err(VerifyError::Input(format!(
                "tensor '{}' has {} values for shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            )));
        }
        let end = offset + 4 * numel;
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| VerifyError::Input(e.to_string()))?;
    // Pad the header with spaces so the data starts 8-byte aligned.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }

    let name = path
        .file_name()
        .ok_or_else(|| VerifyError::Input(format!("{}: no file name", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let result = (|| -> std::io::Result<()> {
        let file = File::create(&temp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)?;
        for t in tensors {
            for chunk in t.data.chunks(1 << 16) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.write_all(&bytes)?;
            }
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(io_err(path, e));
    }
    Ok(())
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
