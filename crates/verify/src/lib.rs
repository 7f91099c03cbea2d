//! `verify`: the f32 reference forward pass of Gemma 4, accuracy metrics, reports and gates.
//!
//! The forward pass ([`model`]) follows transformers' Gemma 4 text model in float32 and reads its
//! weights through the [`weights::Weights`] trait, so the safetensors checkpoint and (later)
//! quantized candidates run through the same code. Calibration hangs on [`observer::Observer`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod attention;
pub mod awq_weights;
pub mod candidate;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod error;
pub mod gates;
pub mod gemm;
pub mod gguf_weights;
pub mod layer;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod moe;
pub mod observer;
pub mod onnx_weights;
pub mod ops;
pub mod output;
pub mod reference_file;
pub mod report;
pub mod rope;
pub mod size;
pub mod spill;
pub mod tokenizer;
pub mod weights;

pub use error::{Result, VerifyError};
pub use model::{forward_streaming, ForwardOptions, ForwardOutput, GroupLogits, LayerMajor, Model};
pub use observer::{LinearSite, NoObserver, Observer};
pub use tokenizer::Tokenizer;
pub use weights::{Dims, Matrix, RowSource, Weights};
