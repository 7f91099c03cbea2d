//! Per-tensor type choice for a file type, as `llama-quantize` makes it (`llama-quant.cpp`:
//! `tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`), plus
//! g4q's overrides (`--tensor-type REGEX=TYPE`, `--token-embedding-type`,
//! `--output-tensor-type`, `--pure`). The rules are kept literally, counters included, so the
//! same input gives llama.cpp's types tensor for tensor.

use std::cmp::Ordering;

use kernels::GgmlType;
use regex::Regex;

use crate::ftype::FileType;

/// Facts about the model that the rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    /// Number of experts (0 or 1 for dense models).
    pub n_expert: usize,
    /// Query heads per KV head on layer 0 (`hparams.n_gqa()`).
    pub n_gqa: usize,
    /// Number of layers.
    pub n_layer: usize,
}

/// A tensor as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// The type the tensor has in the input (kept when it is not quantized).
    pub input_type: GgmlType,
}

/// User choices that modify the mix.
#[derive(Clone, Debug, Default)]
pub struct MixOptions {
    /// One type for every quantizable tensor (llama-quantize's `--pure`).
    pub pure: bool,
    /// Whether an importance matrix is used (some rules depend on it).
    pub has_imatrix: bool,
    /// `--tensor-type REGEX=TYPE`, first match wins.
    pub overrides: Vec<(Regex, GgmlType)>,
    pub token_embedding_type: Option<GgmlType>,
    pub output_tensor_type: Option<GgmlType>,
    /// The type of llama.cpp's intermediate file (the converter's `--outtype` before
    /// llama-quantize), which the tensors the mix leaves unquantized keep; `None` is F32.
    pub intermediate: Option<GgmlType>,
}

/// The type chosen for one tensor, and the type the mix wanted before a shape fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub ty: GgmlType,
    /// `Some(wanted)` when the row length forced a fallback from `wanted`.
    pub fallback_from: Option<GgmlType>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight")
        || name.contains("attn_kv_b.weight")
        || name.contains("attn_v.weight")
    {
        Category::AttnV
    } else if name.contains("attn_k.weight") {
        Category::AttnK
    } else if name.contains("attn_q.weight") {
        Category::AttnQ
    } else if name.contains("attn_output.weight") {
        Category::AttnOutput
    } else if name.contains("ffn_up") {
        Category::FfnUp
    } else if name.contains("ffn_gate") {
        Category::FfnGate
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// `tensor_allows_quantization` for the tensors a Gemma 4 text GGUF holds.
pub fn allows_quantization(t: &TensorDesc) -> bool {
    let n = &t.name;
    let n_dims = t.dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    n_dims >= 2
        && n.ends_with("weight")
        && !n.contains("_norm.weight")
        && !n.contains("ffn_gate_inp.weight")
        && !n.contains("altup")
        && !n.contains("laurel")
        && !n.contains("per_layer_model_proj")
        && !n.contains(".position_embd")
        && !n.contains(".patch_embd")
}

/// The layer number of a `blk.N.` name; -1 for global tensors.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// llama.cpp's `weight_name_comparer`: global tensors first, then by layer, then by name. This
/// is the order in which llama-quantize visits tensors (the counters depend on it) and writes
/// them.
pub fn quantize_order(a: &str, b: &str) -> Ordering {
    layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b))
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Chooses the type of every tensor. `tensors` must be in [`quantize_order`].
pub fn choose_types(
    tensors: &[TensorDesc],
    facts: &ModelFacts,
    ftype: FileType,
    opts: &MixOptions,
) -> Vec<Choice> {
    let mut st = State {
        n_attention_wv: tensors
            .iter()
            .filter(|t| category(&t.name) == Category::AttnV)
            .count() as i64,
        tied: !tensors
            .iter()
            .any(|t| category(&t.name) == Category::Output),
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
    };
    tensors
        .iter()
        .map(|t| st.choose(t, facts, ftype, opts))
        .collect()
}

struct State {
    n_attention_wv: i64,
    tied: bool,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

impl State {
    fn choose(
        &mut self,
        t: &TensorDesc,
        facts: &ModelFacts,
        ftype: FileType,
        opts: &MixOptions,
    ) -> Choice {
        let keep = Choice {
            ty: t.input_type,
            fallback_from: None,
        };
        if !allows_quantization(t) {
            return keep;
        }
        let cat = category(&t.name);
        if let (Some(ty), Category::TokenEmbd) = (opts.token_embedding_type, cat) {
            return Choice {
                ty,
                fallback_from: None,
            };
        }
        if let (Some(ty), Category::Output) = (opts.output_tensor_type, cat) {
            return Choice {
                ty,
                fallback_from: None,
            };
        }
        let default = ftype.default_type();
        if !default.is_quantized() {
            return Choice {
                ty: default,
                fallback_from: None,
            };
        }
        let mut ty = default;
        let manual = opts
            .overrides
            .iter()
            .find(|(re, _)| re.is_match(&t.name))
            .map(|(_, ty)| *ty);
        if let Some(m) = manual {
            ty = m;
        } else if !opts.pure {
            ty = self.mix_type(ty, t, cat, facts, ftype, opts);
        }
        fallback(t, ty)
    }

    /// `llama_tensor_get_type_impl` for the file types g4q supports.
    fn mix_type(
        &mut self,
        mut ty: GgmlType,
        t: &TensorDesc,
        cat: Category,
        facts: &ModelFacts,
        ftype: FileType,
        opts: &MixOptions,
    ) -> GgmlType {
        use FileType as F;
        use GgmlType as G;
        let n_expert = facts.n_expert;
        let n_layer = facts.n_layer as i64;
        // MoE models read the layer from the name; dense ones count tensors of the category.
        let layer = |counter: i64| {
            if n_expert > 1 {
                layer_of(&t.name)
            } else {
                counter
            }
        };
        if cat == Category::Output || (self.tied && cat == Category::TokenEmbd) {
            if let Some(o) = opts.output_tensor_type {
                return o;
            }
            let nx = t.dims[0] as usize;
            if !nx.is_multiple_of(ty.block_size()) {
                return G::Q8_0;
            }
            return if ty != G::Q8_0 { G::Q6K } else { ty };
        }
        match cat {
            Category::TokenEmbd => {}
            Category::AttnV => {
                ty = match ftype {
                    F::Q2K => {
                        if facts.n_gqa >= 4 {
                            G::Q4K
                        } else {
                            G::Q3K
                        }
                    }
                    F::Q3KM => {
                        if self.i_attention_wv < 2 {
                            G::Q5K
                        } else {
                            G::Q4K
                        }
                    }
                    F::Q3KL => G::Q5K,
                    F::IQ4NL | F::IQ4XS if facts.n_gqa >= 4 => G::Q5K,
                    F::Q4KM | F::Q5KM
                        if use_more_bits(self.i_attention_wv, self.n_attention_wv) =>
                    {
                        G::Q6K
                    }
                    F::Q4KS if self.i_attention_wv < 4 => G::Q5K,
                    _ => ty,
                };
                if n_expert == 8 {
                    ty = G::Q8_0;
                }
                self.i_attention_wv += 1;
            }
            Category::AttnK => {
                if n_expert == 8 {
                    ty = G::Q8_0;
                }
            }
            Category::AttnQ => {}
            Category::FfnDown => {
                let i = layer(self.i_ffn_down);
                let has_im = opts.has_imatrix;
                ty = match ftype {
                    F::Q2K => G::Q3K,
                    F::Q3KM => {
                        if i < n_layer / 16 {
                            G::Q5K
                        } else {
                            G::Q4K
                        }
                    }
                    F::Q3KL => G::Q5K,
                    F::Q4KM => {
                        if use_more_bits(i, n_layer) {
                            G::Q6K
                        } else {
                            ty
                        }
                    }
                    F::IQ4NL | F::IQ4XS if i < n_layer / 8 && !has_im => G::Q5K,
                    F::Q5KM if use_more_bits(i, n_layer) => G::Q6K,
                    F::Q4KS if i < n_layer / 8 => G::Q5K,
                    F::Q4_0 if has_im && i < n_layer / 8 => G::Q4_1,
                    F::Q5_0 if has_im && i < n_layer / 8 => G::Q5_1,
                    _ => ty,
                };
                self.i_ffn_down += 1;
            }
            Category::AttnOutput => {
                if n_expert == 8 {
                    if matches!(
                        ftype,
                        F::Q2K | F::Q3KS | F::Q3KM | F::IQ4NL | F::Q4KS | F::Q4KM | F::IQ4XS
                    ) {
                        ty = G::Q5K;
                    }
                } else {
                    ty = match ftype {
                        F::Q2K => G::Q3K,
                        F::Q3KM => G::Q4K,
                        F::Q3KL => G::Q5K,
                        _ => ty,
                    };
                }
            }
            Category::FfnGate => self.i_ffn_gate += 1,
            Category::FfnUp => self.i_ffn_up += 1,
            Category::Output | Category::Other => {}
        }
        ty
    }
}

/// `tensor_type_fallback`: a type whose block does not divide the row length falls back to a
/// 32-block type, and to F16 when even that does not fit.
fn fallback(t: &TensorDesc, wanted: GgmlType) -> Choice {
    use GgmlType as G;
    let ncols = t.dims[0] as usize;
    if ncols.is_multiple_of(wanted.block_size()) {
        return Choice {
            ty: wanted,
            fallback_from: None,
        };
    }
    let mut ty = match wanted {
        G::IQ4XS => G::IQ4NL,
        G::Q2K | G::Q3K => G::Q4_0,
        G::Q4K => G::Q5_0,
        G::Q5K => G::Q5_1,
        G::Q6K => G::Q8_0,
        _ => G::F16,
    };
    if !ncols.is_multiple_of(ty.block_size()) {
        ty = G::F16;
    }
    Choice {
        ty,
        fallback_from: Some(wanted),
    }
}
