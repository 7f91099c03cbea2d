//! Calibration from g4q's own f32 forward pass (`verify`): the importance matrix that
//! `llama-imatrix` computes, collected on the same chunks of the same text so that a run here and
//! a run of llama.cpp over one file give the same tensors, names and counts.
//!
//! - [`chunks`]: calibration text → token chunks, exactly as llama-imatrix cuts them;
//! - [`collector`]: the [`verify::Observer`] that sums x² per input column and expert;
//! - [`run`]: the layer-major pass that ties both to the forward pass.

pub mod chunks;
pub mod collector;
pub mod run;

pub use chunks::{calibration_tokens, split_chunks};
pub use collector::ImatrixCollector;
pub use run::{compute_imatrix, compute_imatrix_with, ImatrixOptions};
