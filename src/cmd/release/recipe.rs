//! What defines a release: the options as recorded ([`Recipe`]), the checkpoint's fingerprint
//! and the tool version ([`Header`]). Every part of a sharded release records its header, and
//! `--merge` accepts parts only when their headers are equal.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use verify::candidate::{fingerprint_with_members, sha256_bytes, InputRecord, MemberHash};
use verify::data::BUNDLED_TEXT;
use verify::gates::Thresholds;

use super::super::mix_args::ImatrixArg;
use super::super::usage;
use super::{Args, FormatArg};

/// The options of a release, with the sha256 of every input file they name, in the order and
/// spelling `release.json` records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The checkpoint folder as given.
    pub model: String,
    /// File name prefix.
    pub name: String,
    /// GGUF types (llama.cpp names), in the order given; empty without `gguf` in formats.
    pub types: Vec<String>,
    /// `gguf`, `awq`, `onnx`.
    pub formats: Vec<String>,
    pub imatrix: Option<ImatrixRecipe>,
    /// Present with `--awq` or `--formats awq`.
    pub awq: Option<AwqRecipe>,
    /// Present with `--formats onnx`.
    pub onnx_type: Option<String>,
    /// The projector's type (F16, BF16, F32, Q8_0) when the release ships one.
    pub mmproj: Option<String>,
    pub eval: EvalRecipe,
    pub gates: Gates,
    pub quantized_by: String,
}

/// How the importance matrix comes about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImatrixRecipe {
    /// `auto` (computed from `data`) or `file`.
    pub source: String,
    /// `auto`: the calibration text, chunking as llama-imatrix.
    pub data: Option<InputRecord>,
    pub ctx: Option<usize>,
    pub chunks: Option<usize>,
    /// `file`: the file given.
    pub file: Option<InputRecord>,
}

/// The AWQ search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwqRecipe {
    pub data: InputRecord,
    pub group_size: usize,
    pub awq_tokens: usize,
    pub no_clip: bool,
    /// Whether the GGUF files are made from the AWQ-scaled weights (`--awq`).
    pub gguf: bool,
}

/// The verification pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecipe {
    pub data: InputRecord,
    pub ctx: usize,
    pub chunks: Option<usize>,
    pub layer_errors: bool,
}

/// The gate thresholds after `g4q.toml` and flags (`None`: gate off).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    pub max_kld: Option<f64>,
    pub min_top1: Option<f64>,
    pub max_ppl_ratio: Option<f64>,
}

impl Gates {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_kld: self.max_kld,
            min_top1: self.min_top1,
            max_ppl_ratio: self.max_ppl_ratio,
        }
    }
}

/// The model card's facts from the checkpoint (its README's front matter, its config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardFacts {
    pub base_model: String,
    pub license: Option<String>,
    pub pipeline_tag: String,
}

/// A checkpoint file and its sha256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileHash {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The checkpoint a release came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub path: String,
    /// The fingerprint `g4q verify` reports record as `reference.sha256`.
    pub sha256: String,
    /// Each of its `*.json` and `*.safetensors` files.
    pub files: Vec<FileHash>,
}

/// Tool, version, checkpoint, recipe and card facts: what every part of a release must share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub tool: String,
    pub version: String,
    pub checkpoint: CheckpointRecord,
    pub recipe: Recipe,
    pub card: CardFacts,
}

impl Header {
    pub fn new(model: &Path, recipe: &Recipe) -> anyhow::Result<Header> {
        Ok(Header {
            tool: "g4q".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            checkpoint: checkpoint_record(model, recipe)?,
            recipe: recipe.clone(),
            card: card_facts(model, recipe.mmproj.is_some())?,
        })
    }
}

/// The record of a text input: its path as given and the sha256 of its bytes.
pub fn input_record(path: &Path, kind: &str) -> anyhow::Result<InputRecord> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(InputRecord {
        path: path.display().to_string(),
        kind: kind.into(),
        sha256: sha256_bytes(&bytes),
    })
}

impl Recipe {
    /// The recipe of `args`; checks every flag combination before anything runs.
    pub fn from_args(args: &Args, model: &Path) -> anyhow::Result<Recipe> {
        let has = |f: FormatArg| args.formats.contains(&f);
        let mut formats: Vec<String> = Vec::new();
        for (f, n) in [
            (FormatArg::Gguf, "gguf"),
            (FormatArg::Awq, "awq"),
            (FormatArg::Onnx, "onnx"),
        ] {
            if has(f) {
                formats.push(n.into());
            }
        }
        let mut types: Vec<String> = Vec::new();
        if has(FormatArg::Gguf) {
            for t in &args.types {
                let n = t.name().to_string();
                if types.contains(&n) {
                    return Err(usage(format!("--types names {n} twice")));
                }
                types.push(n);
            }
            if types.is_empty() {
                return Err(usage("--types is empty"));
            }
        }
        if args.imatrix.is_some() && !has(FormatArg::Gguf) {
            return Err(usage("--imatrix is only used by --formats gguf"));
        }
        if args.awq && !has(FormatArg::Gguf) {
            return Err(usage(
                "--awq scales the GGUF files; the AWQ int4 folder is --formats awq",
            ));
        }
        let needs_data =
            matches!(args.imatrix, Some(ImatrixArg::Auto)) || args.awq || has(FormatArg::Awq);
        let data = match (&args.data, needs_data) {
            (Some(d), true) => Some(input_record(d, "text")?),
            (None, true) => {
                return Err(usage(
                    "--imatrix auto, --awq and --formats awq need --data FILE.txt",
                ))
            }
            (Some(_), false) => {
                return Err(usage(
                    "--data is only read with --imatrix auto, --awq or --formats awq",
                ))
            }
            (None, false) => None,
        };
        if args.imatrix_chunks.is_some() && !matches!(args.imatrix, Some(ImatrixArg::Auto)) {
            return Err(usage("--imatrix-chunks is only read with --imatrix auto"));
        }
        if args.imatrix_ctx == 0 {
            return Err(usage("--imatrix-ctx must be at least 1"));
        }
        let imatrix = match &args.imatrix {
            None => None,
            Some(ImatrixArg::Auto) => Some(ImatrixRecipe {
                source: "auto".into(),
                data: data.clone(),
                ctx: Some(args.imatrix_ctx),
                chunks: args.imatrix_chunks,
                file: None,
            }),
            Some(ImatrixArg::File(p)) => Some(ImatrixRecipe {
                source: "file".into(),
                data: None,
                ctx: None,
                chunks: None,
                file: Some(input_record(p, "imatrix")?),
            }),
        };
        let awq = match (&data, args.awq || has(FormatArg::Awq)) {
            (Some(d), true) => Some(AwqRecipe {
                data: d.clone(),
                group_size: args.awq_args.group_size,
                awq_tokens: args.awq_args.awq_tokens,
                no_clip: args.awq_args.no_clip,
                gguf: args.awq,
            }),
            _ => None,
        };
        if args.ctx < 2 {
            return Err(usage(format!(
                "--ctx {} is too small: a chunk needs at least 2 tokens",
                args.ctx
            )));
        }
        let eval = EvalRecipe {
            data: match &args.eval {
                Some(p) => input_record(p, "text")?,
                None => InputRecord {
                    path: "data/eval.txt".into(),
                    kind: "bundled".into(),
                    sha256: sha256_bytes(BUNDLED_TEXT.as_bytes()),
                },
            },
            ctx: args.ctx,
            chunks: args.chunks,
            layer_errors: !args.no_layer_errors,
        };
        let t = args.gates.thresholds()?;
        let name = match &args.name {
            Some(n) => n.clone(),
            None => default_name(model)?,
        };
        check_name(&name)?;
        Ok(Recipe {
            model: model.display().to_string(),
            name,
            types,
            formats,
            imatrix,
            awq,
            onnx_type: has(FormatArg::Onnx).then(|| args.onnx_type.name().to_string()),
            mmproj: mmproj_recipe(args, model, has(FormatArg::Gguf))?,
            eval,
            gates: Gates {
                max_kld: t.max_kld,
                min_top1: t.min_top1,
                max_ppl_ratio: t.max_ppl_ratio,
            },
            quantized_by: args.quantized_by.clone(),
        })
    }
}

impl Recipe {
    /// The `g4q release` arguments that make this recipe into `out`, every option spelt out.
    pub fn release_argv(&self, out: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "g4q".into(),
            "release".into(),
            self.model.clone(),
            "--out".into(),
            out.into(),
            "--name".into(),
            self.name.clone(),
            "--formats".into(),
            self.formats.join(","),
        ];
        if !self.types.is_empty() {
            a.extend(["--types".into(), self.types.join(",")]);
        }
        let data = self
            .awq
            .as_ref()
            .map(|w| &w.data)
            .or_else(|| self.imatrix.as_ref().and_then(|i| i.data.as_ref()));
        if let Some(im) = &self.imatrix {
            match &im.file {
                Some(f) => a.extend(["--imatrix".into(), f.path.clone()]),
                None => a.extend(["--imatrix".into(), "auto".into()]),
            }
            if let Some(c) = im.ctx {
                a.extend(["--imatrix-ctx".into(), c.to_string()]);
            }
            if let Some(c) = im.chunks {
                a.extend(["--imatrix-chunks".into(), c.to_string()]);
            }
        }
        if let Some(d) = data {
            a.extend(["--data".into(), d.path.clone()]);
        }
        if let Some(w) = &self.awq {
            if w.gguf {
                a.push("--awq".into());
            }
            a.extend([
                "--group-size".into(),
                w.group_size.to_string(),
                "--awq-tokens".into(),
                w.awq_tokens.to_string(),
            ]);
            if w.no_clip {
                a.push("--no-clip".into());
            }
        }
        if let Some(t) = &self.onnx_type {
            a.extend(["--onnx-type".into(), t.clone()]);
        }
        match &self.mmproj {
            Some(t) => a.extend(["--mmproj".into(), "--mmproj-type".into(), t.clone()]),
            None if self.formats.iter().any(|f| f == "gguf") => a.push("--no-mmproj".into()),
            None => {}
        }
        if self.eval.data.kind != "bundled" {
            a.extend(["--eval".into(), self.eval.data.path.clone()]);
        }
        a.extend(["--ctx".into(), self.eval.ctx.to_string()]);
        if let Some(c) = self.eval.chunks {
            a.extend(["--chunks".into(), c.to_string()]);
        }
        if !self.eval.layer_errors {
            a.push("--no-layer-errors".into());
        }
        for (flag, v) in [
            ("--max-kld", self.gates.max_kld),
            ("--min-top1", self.gates.min_top1),
            ("--max-ppl-ratio", self.gates.max_ppl_ratio),
        ] {
            if let Some(v) = v {
                a.extend([flag.into(), v.to_string()]);
            }
        }
        a.extend(["--quantized-by".into(), self.quantized_by.clone()]);
        a
    }
}

/// Whether the release ships the projector, and its type: with `--formats gguf`, on when
/// config.json has a vision_config (a multimodal GGUF release without it cannot see images in
/// llama.cpp) unless `--no-mmproj`. Checks here that the projector can be written, so a
/// checkpoint llama.cpp's converter would refuse fails before any work.
fn mmproj_recipe(args: &Args, model: &Path, gguf: bool) -> anyhow::Result<Option<String>> {
    if args.no_mmproj {
        if args.mmproj_type.is_some() {
            return Err(usage("--mmproj-type is not read with --no-mmproj"));
        }
        return Ok(None);
    }
    let config = model.join("config.json");
    let towers = std::fs::read(&config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c.get("vision_config").and_then(|v| v.as_object()).cloned())
        .is_some_and(|m| !m.is_empty());
    let asked = args.mmproj || args.mmproj_type.is_some();
    if !gguf {
        return match asked {
            true => Err(usage(
                "--mmproj ships beside GGUF files: add gguf to --formats",
            )),
            false => Ok(None),
        };
    }
    if !towers {
        return match asked {
            true => Err(usage(format!(
                "{}: --mmproj: no vision_config, the model has no towers to write",
                config.display()
            ))),
            false => Ok(None),
        };
    }
    let ty = args.mmproj_type.unwrap_or(convert::mmproj::OutType::F16);
    let ckpt = convert::Checkpoint::open(model)?;
    convert::mmproj::plan(&ckpt, ty).map_err(|e| {
        usage(format!(
            "{e} (the projector; --no-mmproj releases the text model only)"
        ))
    })?;
    Ok(Some(super::outputs::mmproj_type_name(ty)))
}

/// The checkpoint folder's own name (canonical, so `.` works).
fn default_name(model: &Path) -> anyhow::Result<String> {
    let canon = model
        .canonicalize()
        .with_context(|| format!("reading {}", model.display()))?;
    canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| usage(format!("{}: give --name", model.display())))
}

/// A file name prefix must be one plain path component.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "--name '{name}': use letters, digits and - _ . + (not starting with .)"
        )))
    }
}

/// The checkpoint's fingerprint and the sha256 and size of each of its `*.json` /
/// `*.safetensors` files, by name, from one read of its bytes.
fn checkpoint_record(model: &Path, recipe: &Recipe) -> anyhow::Result<CheckpointRecord> {
    let (sha256, members) = fingerprint_with_members(model, |n| {
        n.ends_with(".json") || n.ends_with(".safetensors")
    })?;
    Ok(CheckpointRecord {
        path: recipe.model.clone(),
        sha256,
        files: members.into_iter().map(FileHash::from).collect(),
    })
}

impl From<MemberHash> for FileHash {
    fn from(m: MemberHash) -> Self {
        FileHash {
            name: m.name,
            sha256: m.sha256,
            bytes: m.bytes,
        }
    }
}

/// The card's front matter from the checkpoint: its README.md's `base_model`, `license` and
/// `pipeline_tag` when it has them, else `_name_or_path` from config.json for the base model
/// (else the folder name) and `text-generation`, or `image-text-to-text` when the release ships
/// the projector (what the Hub lists llama.cpp's multimodal releases under).
fn card_facts(model: &Path, multimodal: bool) -> anyhow::Result<CardFacts> {
    let card = convert::llama::ModelCard::read(model)?;
    let get = |k: &str| card.text(k);
    let config: serde_json::Value = std::fs::read(model.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let base_model = get("base_model")
        .or_else(|| {
            config
                .get("_name_or_path")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .map_or_else(|| default_name(model), Ok)?;
    Ok(CardFacts {
        base_model,
        license: get("license"),
        pipeline_tag: get("pipeline_tag").unwrap_or_else(|| {
            match multimodal {
                true => "image-text-to-text",
                false => "text-generation",
            }
            .into()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_component() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "x\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["gemma-4-E2B-it", "released_bf16", "m.v2+x"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        println!("10 names checked");
    }
}
