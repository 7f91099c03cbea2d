//! `quantize`: llama.cpp's file types and per-tensor mixes, calibration (imatrix, AWQ) and the
//! convert pipeline that turns a checkpoint into a quantized release.

pub mod ftype;
pub mod mix;

pub use ftype::FileType;
pub use mix::{choose_types, quantize_order, Choice, MixOptions, ModelFacts, TensorDesc};
