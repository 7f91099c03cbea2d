//! `genai_config.json`: what onnxruntime-genai reads to run a release folder (the decoder file,
//! its input/output names, the cache geometry, the special tokens and the search defaults), in
//! the layout of onnxruntime-genai's model builder, holding only fields genai's config defines.
//!
//! The KV-shared layers of E2B/E4B are the last `num_kv_shared_layers` layers and have no cache
//! of their own, so the cached layers are exactly `0..first_kv_shared_layer()`: that count is
//! `num_hidden_layers` here, and genai's `past_key_values.%d.*` / `present.%d.*` names then
//! cover precisely the graph's cache inputs and outputs. Per-layer head counts and sizes (sliding
//! vs full layers) are not listed: genai reads them from the graph's fixed cache dims.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::Gemma4Config;
use crate::error::{ConvertError, Result};

/// The file name inside a release folder.
pub const GENAI_FILE: &str = "genai_config.json";
/// onnxruntime-genai's model type for a Gemma 4 text decoder.
pub const MODEL_TYPE: &str = "gemma4_text";

/// Search defaults a checkpoint's `generation_config.json` may set (the keys genai's builder
/// copies); absent ones keep the builder's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchDefaults {
    pub do_sample: bool,
    pub top_k: u32,
    pub top_p: f64,
    pub temperature: f64,
}

impl Default for SearchDefaults {
    fn default() -> Self {
        SearchDefaults {
            do_sample: false,
            top_k: 50,
            top_p: 1.0,
            temperature: 1.0,
        }
    }
}

/// The checkpoint's generation config.
pub const GENERATION_FILE: &str = "generation_config.json";

/// Reads the search defaults and extra end-of-sequence ids of `generation_config.json` in
/// `dir` (defaults and none when the file is absent). A key of the wrong type is an error naming
/// the file and the key.
pub fn read_generation_config(dir: &Path) -> Result<(SearchDefaults, Vec<u32>)> {
    let path = dir.join(GENERATION_FILE);
    let mut search = SearchDefaults::default();
    if !path.is_file() {
        return Ok((search, Vec::new()));
    }
    let file = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| ConvertError::io(&path, e))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ConvertError::config(&file, format!("not JSON: {e}")))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| ConvertError::config(&file, "not a JSON object"))?;
    let bad = |key: &str, want: &str| ConvertError::config(&file, format!("'{key}': not {want}"));
    let id = |key: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(key, "a token id"))
    };
    let get = |key: &str| obj.get(key).filter(|v| !v.is_null());
    if let Some(v) = get("do_sample") {
        search.do_sample = v.as_bool().ok_or_else(|| bad("do_sample", "a boolean"))?;
    }
    if let Some(v) = get("top_k") {
        search.top_k = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("top_k", "a non-negative integer"))?;
    }
    if let Some(v) = get("top_p") {
        search.top_p = v
            .as_f64()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| bad("top_p", "a number in [0, 1]"))?;
    }
    if let Some(v) = get("temperature") {
        search.temperature = v
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| bad("temperature", "a non-negative number"))?;
    }
    let eos = match get("eos_token_id") {
        None => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| id("eos_token_id", v))
            .collect::<Result<_>>()?,
        Some(v) => vec![id("eos_token_id", v)?],
    };
    Ok((search, eos))
}

/// The `genai_config.json` document for a release of `cfg` whose graph is `filename`; `eos` is
/// every id that ends generation (the config's and the generation config's).
pub fn genai_config(
    cfg: &Gemma4Config,
    filename: &str,
    eos: &[u32],
    search: &SearchDefaults,
) -> Value {
    let eos: Value = match eos {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "model": {
            "bos_token_id": cfg.bos_token_id,
            "context_length": cfg.max_position_embeddings,
            "decoder": {
                "session_options": {
                    "log_id": "onnxruntime-genai",
                    "provider_options": []
                },
                "filename": filename,
                "head_size": cfg.head_dim,
                "hidden_size": cfg.hidden_size,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value"
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value"
                },
                "num_attention_heads": cfg.num_attention_heads,
                "num_hidden_layers": cfg.first_kv_shared_layer(),
                "num_key_value_heads": cfg.num_key_value_heads
            },
            "eos_token_id": eos,
            "pad_token_id": cfg.pad_token_id,
            "type": MODEL_TYPE,
            "vocab_size": cfg.vocab_size
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": search.do_sample,
            "early_stopping": true,
            "length_penalty": 1.0,
            "max_length": cfg.max_position_embeddings,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": false,
            "repetition_penalty": 1.0,
            "temperature": search.temperature,
            "top_k": search.top_k,
            "top_p": search.top_p
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(SearchDefaults, Vec<u32>)> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERATION_FILE), text).unwrap();
        read_generation_config(dir.path())
    }

    #[test]
    fn generation_config_sets_search_defaults_and_eos() {
        let (search, eos) =
            read(r#"{"do_sample": true, "top_k": 64, "top_p": 0.95, "eos_token_id": [1, 106]}"#)
                .unwrap();
        let want = SearchDefaults {
            do_sample: true,
            top_k: 64,
            top_p: 0.95,
            temperature: 1.0,
        };
        assert_eq!((search, eos), (want, vec![1, 106]));
        assert_eq!(read(r#"{"eos_token_id": 1}"#).unwrap().1, vec![1]);
        let none = tempfile::tempdir().unwrap();
        let (search, eos) = read_generation_config(none.path()).unwrap();
        assert_eq!((search, eos), (SearchDefaults::default(), vec![]));
        println!("genai generation_config: 3 files read");
    }

    #[test]
    fn a_wrong_typed_generation_key_is_an_error_naming_file_and_key() {
        let cases = [
            (r#"{"do_sample": "yes"}"#, "do_sample"),
            (r#"{"top_k": -1}"#, "top_k"),
            (r#"{"top_p": 2}"#, "top_p"),
            (r#"{"temperature": "hot"}"#, "temperature"),
            (r#"{"eos_token_id": [1, 5000000000]}"#, "eos_token_id"),
            (r#"{"eos_token_id": "<eos>"}"#, "eos_token_id"),
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
        ];
        for (text, key) in cases {
            let err = read(text).unwrap_err().to_string();
            assert!(
                err.contains(GENERATION_FILE) && err.contains(key),
                "{text}: {err}"
            );
        }
        println!(
            "genai generation_config: {} bad files rejected",
            cases.len()
        );
    }
}
