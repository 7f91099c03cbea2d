//! AWQ: activation-aware int4 weight quantization (AutoAWQ's scale and clip searches, written
//! in compressed-tensors' format) from g4q's own reference forward pass.
//!
//! - [`int4`]: asymmetric group int4 with bf16 scales, as compressed-tensors stores it;
//! - [`search`]: the per-channel scale search and the per-group clip search;
//! - [`calibrate`]: the layer-streaming calibration run that produces an [`AwqPlan`];
//! - [`plan`]: the plan and [`ScaledWeights`], the model with scales folded in;
//! - [`export`]: compressed-tensors `pack-quantized` safetensors, and the scaled f32
//!   checkpoint the GGUF k-quant path reads.

pub mod calibrate;
pub mod export;
pub mod int4;
pub mod plan;
pub mod search;

pub use calibrate::{
    compute_awq, compute_awq_with_fit, AwqOptions, AwqRun, GroupKind, GroupReport,
};
pub use plan::{dividing_group, group_candidates, AwqPlan, GroupFit, LayerScales, ScaledWeights};
