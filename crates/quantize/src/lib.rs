//! `quantize`: llama.cpp's file types and per-tensor mixes, importance matrices, and the
//! pipeline that turns a checkpoint into a quantized release.

pub mod awq;
pub mod calibrate;
pub mod error;
pub mod ftype;
pub mod gguf_release;
pub mod imatrix;
pub mod mix;
pub mod onnx_release;
pub mod requantize;

pub use error::{QuantizeError, Result};
pub use ftype::FileType;
pub use imatrix::Imatrix;
pub use mix::{choose_types, quantize_order, Choice, MixOptions, ModelFacts, TensorDesc};
