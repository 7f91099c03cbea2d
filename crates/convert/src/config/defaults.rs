//! The values a Gemma 4 config takes when a key is absent, and the ranges every value must lie
//! in. Both readers (`config.json` and a GGUF file's `gemma4.*` keys) take their defaults from
//! here, and [`super::Gemma4Config::validate`] holds every config, whatever its source, to the
//! ranges.

/// `rope_theta` of sliding-attention layers.
pub const ROPE_THETA_SLIDING: f64 = 10_000.0;
/// `rope_theta` of full-attention layers.
pub const ROPE_THETA_FULL: f64 = 1_000_000.0;
/// `partial_rotary_factor`: the whole head rotates.
pub const PARTIAL_ROTARY_FACTOR: f64 = 1.0;
pub const RMS_NORM_EPS: f64 = 1e-6;
pub const MAX_POSITION_EMBEDDINGS: usize = 131_072;
pub const PAD_TOKEN_ID: u32 = 0;
pub const BOS_TOKEN_ID: u32 = 2;
pub const EOS_TOKEN_ID: u32 = 1;
/// transformers ties the head to the embedding unless the config says otherwise.
pub const TIE_WORD_EMBEDDINGS: bool = true;
/// The architecture of a config without `architectures` (a bare text model).
pub const ARCHITECTURE: &str = "Gemma4ForCausalLM";

/// Largest width, head count, vocabulary or expert count accepted. The released models stay
/// below 2^19 (a 262,144-token vocabulary); the bound keeps every product of two sizes inside
/// 64 bits and every size inside the UINT32 keys of a GGUF file, and stops a corrupt value from
/// sizing an allocation.
pub const MAX_SIZE: usize = 1 << 20;
/// Most decoder layers accepted (the released models have at most 60).
pub const MAX_LAYERS: usize = 1 << 10;
/// Longest context or sliding window accepted (the released models have 262,144).
pub const MAX_CONTEXT: usize = 1 << 24;
