//! ONNX releases: the Gemma 4 text decoder as one `model.onnx` graph (prefill and KV-cache
//! decoding, onnxruntime-genai's input/output names) with its weights in `model.onnx.data`,
//! plus the tokenizer files, written as one folder that appears only when complete.
//!
//! Messages are the `onnx-protobuf` crate's; large tensors are streamed to the external data
//! file one at a time ([`external`]), so memory holds one weight plus the graph.

pub mod decoder;
pub mod external;
pub mod graph;
pub mod linear;

use std::path::{Path, PathBuf};

use onnx_protobuf::{Message, ModelProto, OperatorSetIdProto};

use crate::checkpoint::Checkpoint;
use crate::error::{ConvertError, Result};
use decoder::Decoder;
use external::ExternalData;
use graph::{GraphBuilder, MS_DOMAIN};
use linear::LinearWriter;

pub use onnx_protobuf;

/// The graph file inside a release folder.
pub const MODEL_FILE: &str = "model.onnx";
/// The external data file beside it.
pub const DATA_FILE: &str = "model.onnx.data";
/// ONNX IR version written (that of the onnx.proto `onnx-protobuf` was generated from).
pub const IR_VERSION: i64 = 10;
/// Default-domain opset: 20 brings `Gelu` with the tanh approximation, 18 `ReduceMean` with axes
/// as an input; 21 is the newest every onnxruntime since 1.20 runs.
pub const OPSET: i64 = 21;

/// Files copied from the checkpoint folder when present: the model config (which `verify` reads
/// to run the release) and what tokenizers and onnxruntime-genai read beside the model.
const COPIED: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// What was written.
#[derive(Clone, Debug)]
pub struct OnnxSummary {
    pub nodes: usize,
    pub initializers: usize,
    /// Bytes of `model.onnx.data`.
    pub data_bytes: u64,
}

/// Writes the ONNX release folder `out` for `ckpt`, its weights written by `lin` (the release
/// type: [`linear::F32Writer`] here, quantized writers in the `quantize` crate).
pub fn write(ckpt: &Checkpoint, out: &Path, lin: &mut dyn LinearWriter) -> Result<OnnxSummary> {
    write_folder(out, |dir| {
        let mut data = ExternalData::create(dir, DATA_FILE)?;
        let g = GraphBuilder::new("gemma4_text_decoder", &mut data);
        let mut dec = Decoder::new(g, ckpt, lin)?;
        dec.build()?;
        let graph = dec.g.finish();
        let summary = OnnxSummary {
            nodes: graph.node.len(),
            initializers: graph.initializer.len(),
            data_bytes: data.len(),
        };
        data.finish()?;
        let opset = |domain: &str, version| OperatorSetIdProto {
            domain: domain.to_string(),
            version,
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![opset("", OPSET), opset(MS_DOMAIN, 1)],
            producer_name: "g4q".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph).into(),
            ..Default::default()
        };
        let path = dir.join(MODEL_FILE);
        let bytes = model
            .write_to_bytes()
            .map_err(|e| ConvertError::format(&path, format!("encoding the ONNX model: {e}")))?;
        write_synced(&path, &bytes)?;
        for name in COPIED {
            let src = ckpt.dir().join(name);
            if src.is_file() {
                let bytes = std::fs::read(&src).map_err(|e| ConvertError::io(&src, e))?;
                write_synced(&dir.join(name), &bytes)?;
            }
        }
        Ok(summary)
    })
}

/// Builds the graph of `ckpt` as [`write`] would, reading and converting every weight, but
/// writes nothing: what `--dry-run` reports.
pub fn plan(ckpt: &Checkpoint, lin: &mut dyn LinearWriter) -> Result<OnnxSummary> {
    let mut data = ExternalData::counting(DATA_FILE);
    let g = GraphBuilder::new("gemma4_text_decoder", &mut data);
    let mut dec = Decoder::new(g, ckpt, lin)?;
    dec.build()?;
    let graph = dec.g.finish();
    Ok(OnnxSummary {
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        data_bytes: data.len(),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| ConvertError::io(path, e))?;
    f.write_all(bytes).map_err(|e| ConvertError::io(path, e))?;
    f.sync_all().map_err(|e| ConvertError::io(path, e))
}

/// Fills a temporary folder beside `target` with `fill` and renames it to `target` once
/// complete; on any error the temporary folder is removed and `target` is untouched. An
/// existing `target` is replaced only when it is an earlier ONNX release (holds
/// `model.onnx`) or empty, so a typo cannot delete an unrelated folder.
fn write_folder<T>(target: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let name = target
        .file_name()
        .ok_or_else(|| ConvertError::format(target, "output path has no folder name"))?;
    if target.exists() {
        let replaceable = target.is_dir()
            && (target.join(MODEL_FILE).is_file()
                || std::fs::read_dir(target).is_ok_and(|mut d| d.next().is_none()));
        if !replaceable {
            return Err(ConvertError::format(
                target,
                "exists and is not an ONNX release folder; choose another --out",
            ));
        }
    }
    let sibling = |tag: &str| {
        let mut n = std::ffi::OsString::from(".");
        n.push(name);
        n.push(format!(".{tag}-{}", std::process::id()));
        target.with_file_name(n)
    };
    let temp = TempDir(sibling("tmp"));
    let _ = std::fs::remove_dir_all(&temp.0);
    std::fs::create_dir_all(&temp.0).map_err(|e| ConvertError::io(&temp.0, e))?;
    let out = fill(&temp.0)?;
    if target.exists() {
        let old = sibling("old");
        std::fs::rename(target, &old).map_err(|e| ConvertError::io(target, e))?;
        if let Err(e) = std::fs::rename(&temp.0, target) {
            // Put the earlier release back rather than lose it.
            let _ = std::fs::rename(&old, target);
            return Err(ConvertError::io(target, e));
        }
        drop(TempDir(old));
    } else {
        std::fs::rename(&temp.0, target).map_err(|e| ConvertError::io(target, e))?;
    }
    Ok(out)
}

/// A folder removed (with its contents) when dropped; after a rename it no longer exists and
/// dropping does nothing.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
