//! Quantizers and scalar dequantizers, one module per family, each a literal port of ggml's
//! reference code so the bytes match.

pub mod iq4;
pub mod kquants;
pub mod legacy;
pub mod search;
