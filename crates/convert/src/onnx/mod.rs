//! ONNX releases: the Gemma 4 text decoder as one `model.onnx` graph (prefill and KV-cache
//! decoding, onnxruntime-genai's input/output names) with its weights in `model.onnx.data`,
//! plus the tokenizer files and onnxruntime-genai's `genai_config.json` ([`genai`]), written as
//! one folder that appears only when complete.
//!
//! Messages are the `onnx-protobuf` crate's; large tensors are streamed to the external data
//! file one at a time ([`external`]), so memory holds one weight plus the graph.

pub mod decoder;
pub mod external;
pub mod genai;
pub mod graph;
pub mod linear;

use std::path::Path;

use onnx_protobuf::{Message, ModelProto, OperatorSetIdProto};

use crate::checkpoint::Checkpoint;
use crate::error::{ConvertError, Result};
use crate::output::write_dir;
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
    let (search, extra_eos) = genai::read_generation_config(ckpt.dir())?;
    let mut eos = ckpt.config().eos_token_ids.clone();
    for id in extra_eos {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    write_dir(out, |dir| {
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
        std::fs::write(&path, &bytes).map_err(|e| ConvertError::io(&path, e))?;
        ckpt.copy_side_files(&COPIED, dir)?;
        let genai = genai::genai_config(ckpt.config(), MODEL_FILE, &eos, &search);
        let path = dir.join(genai::GENAI_FILE);
        let text = serde_json::to_string_pretty(&genai)
            .map_err(|e| ConvertError::format(&path, format!("encoding: {e}")))?;
        std::fs::write(&path, text + "\n").map_err(|e| ConvertError::io(&path, e))?;
        Ok(summary)
    })
}

/// Builds the graph of `ckpt` as [`write`] would, reading and converting every weight, but
/// writes nothing: what `--dry-run` reports.
pub fn plan(ckpt: &Checkpoint, lin: &mut dyn LinearWriter) -> Result<OnnxSummary> {
    genai::read_generation_config(ckpt.dir())?;
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
