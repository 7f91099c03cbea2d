//! The `clip.*` metadata llama.cpp's converter writes for a Gemma 4 projector file, in its key
//! order: `MmprojModel.set_gguf_parameters` (vision block, then audio block) followed by
//! `Gemma4VisionAudioModel`'s projector types and epsilons. Hyperparameters come from
//! `config.json`'s `vision_config` / `audio_config`, the image mean and std from the processor
//! config (`processor_config.json`, or `preprocessor_config.json`), as the converter reads them.

use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::error::{cut, ConvertError, Result};
use crate::gguf::{Array, Metadata, TensorInfo, Value};
use crate::llama::{add_general, QUANTIZATION_VERSION};

/// The keys llama.cpp tries, in order, for a tower's layer count.
const BLOCK_KEYS: [&str; 8] = [
    "n_layers",
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "depth",
    "layers",
    "encoder_layers",
    "vt_num_hidden_layers",
];

/// The towers' hyperparameters as the converter reads them.
#[derive(Clone, Debug)]
pub struct TowerConfig {
    /// `vision_config` (every Gemma 4 has one).
    vision: Map<String, Json>,
    /// `audio_config` when present and not empty (E2B, E4B).
    audio: Option<Map<String, Json>>,
    /// The text model's hidden size: the projectors' output width.
    text_hidden: usize,
    /// `image_mean` and `image_std` of the processor config.
    image_mean: Array,
    image_std: Array,
    config_path: String,
}

impl TowerConfig {
    /// Reads `dir/config.json` and the processor config. A config without `vision_config` has
    /// no towers: an error naming the file.
    pub fn read(dir: &Path, text_hidden: usize) -> Result<TowerConfig> {
        let path = dir.join("config.json");
        let config_path = path.display().to_string();
        let root = read_json(&path)?;
        let section = |key: &str| match root.get(key) {
            Some(Json::Object(m)) if !m.is_empty() => Ok(Some(m.clone())),
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(_)) => Ok(None),
            Some(other) => Err(ConvertError::config(
                &config_path,
                format!("{key} is not an object: {}", cut(&other.to_string())),
            )),
        };
        let vision = section("vision_config")?.ok_or_else(|| {
            ConvertError::config(
                &config_path,
                "has no vision_config: the model has no vision or audio tower to write",
            )
        })?;
        let audio = section("audio_config")?;
        let processor = processor_config(dir)?;
        let proc_path = dir.join("processor_config.json").display().to_string();
        let array = |key: &str| -> Result<Array> {
            let v = processor.get(key).ok_or_else(|| {
                ConvertError::config(
                    &proc_path,
                    format!("has no {key} (llama.cpp's converter needs image_mean and image_std)"),
                )
            })?;
            number_array(v).ok_or_else(|| {
                ConvertError::config(
                    &proc_path,
                    format!("{key} is not an array of numbers: {}", cut(&v.to_string())),
                )
            })
        };
        Ok(TowerConfig {
            image_mean: array("image_mean")?,
            image_std: array("image_std")?,
            vision,
            audio,
            text_hidden,
            config_path,
        })
    }

    /// Whether the checkpoint has an audio tower.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The first of `keys` in `section`, as a UINT32 value.
    fn uint(&self, section: &Map<String, Json>, what: &str, keys: &[&str]) -> Result<u32> {
        let (key, v) = keys
            .iter()
            .find_map(|k| section.get(*k).map(|v| (*k, v)))
            .ok_or_else(|| {
                ConvertError::config(
                    &self.config_path,
                    format!("{what} has none of {}", keys.join(", ")),
                )
            })?;
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| {
                ConvertError::config(
                    &self.config_path,
                    format!(
                        "{what}.{key} is not an integer that fits UINT32: {}",
                        cut(&v.to_string())
                    ),
                )
            })
    }

    /// `layer_norm_eps` of a section, 1e-6 when absent (llama.cpp's default).
    fn eps(&self, section: &Map<String, Json>, what: &str) -> Result<f32> {
        match section.get("layer_norm_eps") {
            None | Some(Json::Null) => Ok(1e-6),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    ConvertError::config(
                        &self.config_path,
                        format!("{what}.layer_norm_eps is not a number"),
                    )
                }),
        }
    }
}

/// Builds the projector file's metadata.
pub fn mmproj_metadata(
    cfg: &TowerConfig,
    dir: &Path,
    tensors: &[TensorInfo],
    file_type: u32,
) -> Result<Metadata> {
    let mut md = Metadata::new();
    add_general(&mut md, "clip", "mmproj", dir, tensors)?;
    md.set("general.file_type", Value::U32(file_type));
    let text = u32::try_from(cfg.text_hidden)
        .map_err(|_| ConvertError::config(&cfg.config_path, "hidden_size does not fit UINT32"))?;
    let v = &cfg.vision;
    md.set("clip.has_vision_encoder", Value::Bool(true));
    md.set("clip.vision.projection_dim", Value::U32(text));
    // Gemma4VisionAudioModel sets image_size to 224 ("unused, but set to avoid error").
    md.set("clip.vision.image_size", Value::U32(224));
    md.set(
        "clip.vision.patch_size",
        Value::U32(cfg.uint(v, "vision_config", &["patch_size"])?),
    );
    md.set(
        "clip.vision.embedding_length",
        Value::U32(cfg.uint(
            v,
            "vision_config",
            &["hidden_size", "width", "vt_hidden_size"],
        )?),
    );
    md.set(
        "clip.vision.feed_forward_length",
        Value::U32(cfg.uint(
            v,
            "vision_config",
            &["intermediate_size", "vt_intermediate_size"],
        )?),
    );
    md.set(
        "clip.vision.block_count",
        Value::U32(cfg.uint(v, "vision_config", &BLOCK_KEYS)?),
    );
    md.set(
        "clip.vision.attention.head_count",
        Value::U32(cfg.uint(
            v,
            "vision_config",
            &[
                "num_attention_heads",
                "num_heads",
                "heads",
                "vt_num_attention_heads",
            ],
        )?),
    );
    md.set(
        "clip.vision.image_mean",
        Value::Array(cfg.image_mean.clone()),
    );
    md.set("clip.vision.image_std", Value::Array(cfg.image_std.clone()));
    if let Some(a) = &cfg.audio {
        let hidden = cfg.uint(a, "audio_config", &["hidden_size"])?;
        md.set("clip.has_audio_encoder", Value::Bool(true));
        md.set("clip.audio.projection_dim", Value::U32(text));
        md.set("clip.audio.embedding_length", Value::U32(hidden));
        // Gemma4VisionAudioModel sets the audio intermediate size to 4 × hidden.
        let ff = hidden.checked_mul(4).ok_or_else(|| {
            ConvertError::config(&cfg.config_path, "audio_config.hidden_size is too large")
        })?;
        md.set("clip.audio.feed_forward_length", Value::U32(ff));
        md.set(
            "clip.audio.block_count",
            Value::U32(cfg.uint(a, "audio_config", &BLOCK_KEYS)?),
        );
        md.set(
            "clip.audio.attention.head_count",
            Value::U32(cfg.uint(a, "audio_config", &["num_attention_heads"])?),
        );
    }
    md.set(
        "clip.vision.projector_type",
        Value::String("gemma4v".into()),
    );
    md.set(
        "clip.vision.attention.layer_norm_epsilon",
        Value::F32(cfg.eps(v, "vision_config")?),
    );
    if let Some(a) = &cfg.audio {
        md.set("clip.audio.projector_type", Value::String("gemma4a".into()));
        let mel = if a.contains_key("input_feat_size") {
            cfg.uint(a, "audio_config", &["input_feat_size"])?
        } else {
            128
        };
        md.set("clip.audio.num_mel_bins", Value::U32(mel));
        md.set(
            "clip.audio.attention.layer_norm_epsilon",
            Value::F32(cfg.eps(a, "audio_config")?),
        );
    }
    md.set(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    Ok(md)
}

fn read_json(path: &Path) -> Result<Map<String, Json>> {
    let text = std::fs::read_to_string(path).map_err(|e| ConvertError::io(path, e))?;
    match serde_json::from_str(&text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(ConvertError::format(path, "is not a JSON object")),
        Err(e) => Err(ConvertError::format(path, format!("not valid JSON: {e}"))),
    }
}

/// The processor settings as llama.cpp merges them: `preprocessor_config.json` (its
/// `media_proc_cfg` lifted to the top), then `processor_config.json` (its `image_processor`
/// lifted to the top) over it.
fn processor_config(dir: &Path) -> Result<Map<String, Json>> {
    let mut merged = Map::new();
    for (file, nested) in [
        ("preprocessor_config.json", "media_proc_cfg"),
        ("processor_config.json", "image_processor"),
    ] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let cfg = read_json(&path)?;
        let lifted = match cfg.get(nested) {
            Some(Json::Object(inner)) => inner.clone(),
            _ => Map::new(),
        };
        merged.extend(cfg);
        merged.extend(lifted);
    }
    Ok(merged)
}

/// A JSON array as gguf-py packs it: the first element's kind decides (float → FLOAT32,
/// integer → INT32); every element must be of that kind.
fn number_array(v: &Json) -> Option<Array> {
    let items = v.as_array()?;
    match items.first() {
        Some(first) if first.is_f64() => items
            .iter()
            .map(|x| x.as_f64().filter(|_| x.is_f64()).map(|f| f as f32))
            .collect::<Option<Vec<_>>>()
            .map(Array::F32),
        Some(_) => items
            .iter()
            .map(|x| x.as_i64().and_then(|i| i32::try_from(i).ok()))
            .collect::<Option<Vec<_>>>()
            .map(Array::I32),
        None => Some(Array::F32(Vec::new())),
    }
}
