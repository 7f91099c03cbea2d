//! The tokenizer as llama.cpp's converter stores it for `gemma4` (`LlamaHfVocab` +
//! `SpecialVocab`): every token with score -1000 and a token type, the BPE merges, the special
//! token ids from `tokenizer_config.json`, and the chat template when there is one.

use std::path::Path;

use serde_json::Value as Json;

use super::super::gguf::{Array, Metadata, Value};
use crate::error::{ConvertError, Result};

/// llama.cpp token types (`llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// Special tokens that Gemma 4's converter forces to USER_DEFINED so they are rendered in
/// output (tool calls, channels, the string delimiter).
const FORCED_USER_DEFINED: &[&str] = &[
    "<|channel>",
    "<channel|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    "<|\"|>",
];

/// The special-token keys in the order `SpecialVocab` writes them.
const SPECIAL: &[(&str, &str)] = &[
    ("bos_token", "tokenizer.ggml.bos_token_id"),
    ("eos_token", "tokenizer.ggml.eos_token_id"),
    ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ("pad_token", "tokenizer.ggml.padding_token_id"),
    ("mask_token", "tokenizer.ggml.mask_token_id"),
];

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| ConvertError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ConvertError::format(path, format!("not valid JSON: {e}")))
}

/// Adds the `tokenizer.*` keys for the tokenizer in `dir`, with `n_vocab` entries (the model's
/// vocabulary size; ids the tokenizer lacks are an error).
pub fn add_tokenizer(md: &mut Metadata, dir: &Path, n_vocab: usize) -> Result<()> {
    let tok_path = dir.join("tokenizer.json");
    let tok = read_json(&tok_path)?;
    let model = &tok["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(ConvertError::format(
            &tok_path,
            "only BPE tokenizers (Gemma 4's) are supported",
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![NORMAL; n_vocab];
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| ConvertError::format(&tok_path, "model.vocab is missing"))?;
    let mut place = |id: u64, text: &str| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            ConvertError::format(
                &tok_path,
                format!("token '{text}' has id {id}, past the vocabulary size {n_vocab}"),
            )
        })?;
        *slot = Some(text.to_string());
        Ok(())
    };
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| ConvertError::format(&tok_path, format!("token '{text}' has no id")))?;
        place(id, text)?;
    }
    let added = tok["added_tokens"].as_array().cloned().unwrap_or_default();
    for a in &added {
        let (Some(id), Some(text)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(ConvertError::format(
                &tok_path,
                "an added token lacks id or content",
            ));
        };
        place(id, text)?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.ok_or_else(|| ConvertError::format(&tok_path, format!("no token has id {id}")))
        })
        .collect::<Result<_>>()?;
    for (id, text) in tokens.iter().enumerate() {
        if is_byte_token(text) {
            types[id] = BYTE;
        }
    }
    for a in &added {
        let id = a["id"].as_u64().unwrap_or_default() as usize;
        let text = a["content"].as_str().unwrap_or_default();
        types[id] = if FORCED_USER_DEFINED.contains(&text) || a["special"].as_bool() != Some(true) {
            USER_DEFINED
        } else {
            CONTROL
        };
    }
    let merges: Vec<String> = match model["merges"].as_array() {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => Ok(format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                )),
                _ => Err(ConvertError::format(
                    &tok_path,
                    "a merge is neither \"a b\" nor [a, b]",
                )),
            })
            .collect::<Result<_>>()?,
    };

    md.set("tokenizer.ggml.model", Value::String("gemma4".into()));
    md.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(tokens.clone())),
    );
    md.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![-1000.0; n_vocab])),
    );
    md.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    md.set("tokenizer.ggml.merges", Value::Array(Array::String(merges)));

    let cfg_path = dir.join("tokenizer_config.json");
    let cfg = if cfg_path.exists() {
        read_json(&cfg_path)?
    } else {
        Json::Null
    };
    for (field, key) in SPECIAL {
        let text = match &cfg[*field] {
            Json::String(s) => Some(s.as_str()),
            Json::Object(o) => o.get("content").and_then(Json::as_str),
            _ => None,
        };
        if let Some(text) = text {
            let id = tokens.iter().position(|t| t == text).ok_or_else(|| {
                ConvertError::format(
                    &cfg_path,
                    format!("{field} '{text}' is not in the vocabulary"),
                )
            })?;
            md.set(*key, Value::U32(id as u32));
        }
    }
    md.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    md.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    if let Some(template) = chat_template(dir, &cfg)? {
        md.set("tokenizer.chat_template", Value::String(template));
    }
    Ok(())
}

/// `<0xAB>`: a byte-fallback token.
fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].chars().all(|c| c.is_ascii_hexdigit())
}

/// The chat template: `chat_template.jinja` beside the tokenizer, else the
/// `chat_template` field of `tokenizer_config.json`.
fn chat_template(dir: &Path, cfg: &Json) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| ConvertError::io(&jinja, e));
    }
    Ok(cfg["chat_template"].as_str().map(str::to_string))
}
