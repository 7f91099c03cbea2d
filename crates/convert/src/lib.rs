//! `convert`: reads Gemma 4 checkpoints (Hugging Face safetensors, sharded, mmap) into a typed
//! config and a lazily loaded tensor source, and (later) writes releases: GGUF, AWQ
//! safetensors, ONNX. It knows file formats and tensor names; it does no model math.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod catalogue;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gguf;
pub mod llama;
pub mod mmproj;
pub mod onnx;
pub mod output;
pub mod pack_quantized;
pub mod rope;
pub mod stfile;
pub mod synth;
pub mod tensor;

pub use catalogue::{Need, TensorSpec};
pub use checkpoint::{Checkpoint, SkippedKind, SkippedTensor};
pub use config::{Gemma4Config, LayerType, RopeParams, RopeType, Variant};
pub use error::{ConvertError, Result};
pub use tensor::{DType, TensorView};
