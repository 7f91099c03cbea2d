//! The projector file (`mmproj`) llama.cpp's multimodal tools load beside the text model: the
//! vision tower (and on E2B/E4B the audio tower) with their projectors, written as
//! `convert_hf_to_gguf.py --mmproj` writes them for Gemma 4 (`Gemma4VisionAudioModel`): the same
//! keys, tensor names, order, shapes, types and bytes.
//!
//! - [`names`]: checkpoint → GGUF names;
//! - [`transform`]: the reshapes, the patch-embedder permutation and the softplus llama.cpp
//!   applies;
//! - [`types`]: the forced F32/F16 tensors and the Q8_0 fallback;
//! - [`metadata`]: the `clip.*` keys.

pub mod metadata;
pub mod names;
mod softplus;
pub mod transform;
pub mod types;

use std::path::{Path, PathBuf};

use kernels::GgmlType;

pub use metadata::TowerConfig;
pub use types::OutType;

use crate::checkpoint::Checkpoint;
use crate::error::{ConvertError, Result};
use crate::gguf::finite::check_encoded;
use crate::gguf::{GgufWriter, TensorInfo};
use crate::llama::encode_unquantized;
use crate::stfile::StFile;
use crate::tensor::{DType, TensorView};
use transform::Transform;

/// One tensor of the projector file.
#[derive(Clone, Debug)]
pub struct MmprojTensor {
    /// The checkpoint name.
    pub hf_name: String,
    pub gguf_name: String,
    /// The written shape, PyTorch order (outermost first).
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    pub transform: Transform,
    /// Data size in bytes.
    pub bytes: u64,
}

impl MmprojTensor {
    /// The header entry.
    pub fn info(&self) -> TensorInfo {
        TensorInfo::from_torch_shape(&self.gguf_name, &self.shape, self.ty)
    }
}

/// The projector file's tensors in llama.cpp's order
/// ([`crate::checkpoint::sort_in_converter_order`]) with their types for `out`. A checkpoint
/// without towers is an error naming its config.
pub fn plan(ckpt: &Checkpoint, out: OutType) -> Result<Vec<MmprojTensor>> {
    // The config decides whether there are towers; the tensors must then be there.
    TowerConfig::read(ckpt.dir(), ckpt.config().hidden_size)?;
    let files = TowerFiles::open(ckpt)?;
    let mut towers: Vec<_> = (files.files.iter().enumerate())
        .flat_map(|(fi, f)| f.tensors().iter().map(move |t| (fi, t)))
        .filter(|(_, t)| names::is_tower(&t.name))
        .collect();
    crate::checkpoint::sort_in_converter_order(&mut towers, |(fi, t)| (*fi, t.name.as_str()));
    let mut rows = Vec::new();
    for (fi, t) in towers {
        rows.push(plan_tensor(&t.name, &t.shape, files.files[fi].path(), out)?);
    }
    if rows.is_empty() {
        return Err(ConvertError::format(
            ckpt.dir(),
            "holds no vision or audio tower tensors to write",
        ));
    }
    Ok(rows)
}

/// One tower tensor's name, transform, written shape and type.
fn plan_tensor(hf: &str, shape: &[usize], file: &Path, out: OutType) -> Result<MmprojTensor> {
    let gguf_name = names::gguf_name(hf).ok_or_else(|| {
        ConvertError::tensor(
            file,
            hf,
            "not a Gemma 4 vision/audio tensor llama.cpp can map",
        )
    })?;
    let (transform, shape) = transform::plan(hf, shape, file)?;
    let row_len = shape.last().copied().unwrap_or(1);
    let ty = types::tensor_type(hf, &gguf_name, shape.len(), row_len, out);
    let info = TensorInfo::from_torch_shape(&gguf_name, &shape, ty);
    let bytes = info
        .checked_n_bytes()
        .ok_or_else(|| ConvertError::tensor(file, hf, format!("shape {shape:?} overflows")))?;
    Ok(MmprojTensor {
        hf_name: hf.to_string(),
        gguf_name,
        shape,
        ty,
        transform,
        bytes,
    })
}

/// Writes the projector file of `ckpt` to `out` (atomically) and returns its tensors.
pub fn write(ckpt: &Checkpoint, out: &Path, ty: OutType) -> Result<Vec<MmprojTensor>> {
    let tensors = plan(ckpt, ty)?;
    let cfg = TowerConfig::read(ckpt.dir(), ckpt.config().hidden_size)?;
    let infos: Vec<TensorInfo> = tensors.iter().map(MmprojTensor::info).collect();
    let md = metadata::mmproj_metadata(&cfg, ckpt.dir(), &infos, ty.file_type())?;
    let files = TowerFiles::open(ckpt)?;
    let mut writer = GgufWriter::create(out, &md, infos)?;
    for t in &tensors {
        let values = transform::apply(t.transform, files.values(&t.hf_name)?);
        let row_len = t.shape.last().copied().unwrap_or(1).max(1);
        let bytes = encode(t, &values, row_len, out)?;
        check_encoded(t.ty, &values, &bytes, row_len)
            .map_err(|message| ConvertError::tensor(out, &t.gguf_name, message))?;
        writer.write_tensor(&t.gguf_name, &bytes)?;
    }
    writer.finish()?;
    Ok(tensors)
}

fn encode(t: &MmprojTensor, values: &[f32], row_len: usize, out: &Path) -> Result<Vec<u8>> {
    if !t.ty.is_quantized() {
        return Ok(encode_unquantized(values, t.ty));
    }
    let mut bytes = vec![0u8; t.bytes as usize];
    kernels::quantize_rows(t.ty, values, row_len, None, &mut bytes)
        .map_err(|e| ConvertError::tensor(out, &t.gguf_name, e.to_string()))?;
    Ok(bytes)
}

/// The checkpoint's weight files (in the checkpoint's order: sorted shard names), opened again
/// to read the tower tensors the text checkpoint skips (mmapped: opening costs a header parse).
struct TowerFiles {
    files: Vec<StFile>,
}

impl TowerFiles {
    fn open(ckpt: &Checkpoint) -> Result<TowerFiles> {
        let paths: Vec<PathBuf> = ckpt.files().map(Path::to_path_buf).collect();
        let files = paths
            .iter()
            .map(|p| StFile::open(p))
            .collect::<Result<_>>()?;
        Ok(TowerFiles { files })
    }

    /// The tensor's values widened to f32 (NaN/Inf refused with its name).
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        for f in &self.files {
            if let Some(raw) = f.tensors().iter().find(|t| t.name == name) {
                let dtype = DType::from_safetensors_name(&raw.dtype).ok_or_else(|| {
                    ConvertError::tensor(
                        f.path(),
                        name,
                        format!("dtype {} is not supported (F32, F16 or BF16)", raw.dtype),
                    )
                })?;
                let view = TensorView {
                    name,
                    file: f.path(),
                    dtype,
                    shape: raw.shape.clone(),
                    data: f.bytes(raw),
                };
                return view.to_f32();
            }
        }
        Err(ConvertError::tensor(
            self.files.first().map_or(Path::new(""), |f| f.path()),
            name,
            "not in the checkpoint's files",
        ))
    }
}
