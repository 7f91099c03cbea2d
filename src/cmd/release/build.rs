//! Making one output of a release, unless a current one is already there ([`Builder::ensure`]).
//! Each output goes through the writer its `g4q convert` counterpart uses, so every file is
//! written atomically and equals what the command in the model card makes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::output::ScratchDir;
use convert::Checkpoint;
use quantize::gguf_release::{self, PlanRow, ReleaseOptions};
use quantize::onnx_release::{self, OnnxOptions};
use quantize::{FileType, Imatrix, MixOptions};
use serde_json::json;

use super::super::awq::{self, AwqArgs};
use super::super::imatrix::{self, Chunking};
use super::super::{internal, progress};
use super::outputs::{Output, IMATRIX_FILE};
use super::recipe::{Header, Recipe};
use super::state::{self, Built};

/// ONNX int4 settings of a release: `g4q convert --format onnx`'s defaults.
const ONNX_BLOCK_SIZE: usize = 32;
const ONNX_ACCURACY_LEVEL: i64 = 4;
const ONNX_EMBEDDING_BITS: u8 = 8;

/// Makes outputs into one release folder, sharing the work they have in common: the checkpoint,
/// the AWQ-scaled weights (`--awq`) and the importance matrix.
pub struct Builder<'a> {
    model: &'a Path,
    out: &'a Path,
    recipe: &'a Recipe,
    header: &'a Header,
    ckpt: Checkpoint,
    /// `--awq`: the scaled checkpoint in a scratch folder, made on first use.
    scaled: Option<(ScratchDir, Checkpoint)>,
    /// The importance matrix as read back from the release's imatrix.gguf, once it is there.
    imatrix: Option<(Imatrix, String)>,
}

impl<'a> Builder<'a> {
    pub fn new(
        model: &'a Path,
        out: &'a Path,
        recipe: &'a Recipe,
        header: &'a Header,
    ) -> anyhow::Result<Self> {
        state::prepare(out)?;
        Ok(Builder {
            model,
            out,
            recipe,
            header,
            ckpt: Checkpoint::open(model)?,
            scaled: None,
            imatrix: None,
        })
    }

    /// sha256 of everything that shapes the bytes of `o`.
    fn inputs(&self, o: &Output) -> anyhow::Result<String> {
        let r = self.recipe;
        let mut v = json!({
            "tool": self.header.tool,
            "version": self.header.version,
            "checkpoint": self.header.checkpoint.sha256,
            "output": o.file_name(&r.name),
        });
        let awq_search = r.awq.as_ref().map(
            |a| json!({"data": a.data, "group_size": a.group_size, "awq_tokens": a.awq_tokens}),
        );
        match o {
            Output::Imatrix => {
                v["imatrix"] = json!(r.imatrix);
                if r.awq.as_ref().is_some_and(|a| a.gguf) {
                    v["awq"] = json!(awq_search);
                }
            }
            Output::Gguf(_) => {
                if r.imatrix.is_some() {
                    let (_, sha) = self
                        .imatrix
                        .as_ref()
                        .ok_or_else(|| internal("the imatrix is made before the GGUF files"))?;
                    v["imatrix"] = json!(sha);
                }
                if r.awq.as_ref().is_some_and(|a| a.gguf) {
                    v["awq"] = json!(awq_search);
                }
            }
            Output::Awq { .. } => {
                v["awq"] = json!(awq_search);
                v["no_clip"] = json!(r.awq.as_ref().map(|a| a.no_clip));
            }
            // The type is in the name; the towers are read unscaled, as `g4q convert --mmproj`.
            Output::Onnx(_) | Output::Mmproj(_) => {}
        }
        Ok(state::key(&v))
    }

    /// Makes `o` unless its record says the output there came from the same inputs.
    pub fn ensure(&mut self, o: &Output) -> anyhow::Result<()> {
        let name = o.file_name(&self.recipe.name);
        let inputs = self.inputs(o)?;
        let target = self.out.join(&name);
        if let Some(b) = state::current_built(self.out, &name, &inputs) {
            eprintln!("g4q: release: {name} is up to date");
            if *o == Output::Imatrix {
                self.load_imatrix(&target, &b)?;
            }
            return Ok(());
        }
        state::forget(self.out, &name)?;
        if o.is_folder() && target.is_dir() {
            // Ours by name and without a current record: rewritten whole, so no file of an
            // earlier run stays inside.
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing the stale {}", target.display()))?;
        }
        let bits_per_weight = self.make(o, &target)?;
        let (sha256, bytes, members) = state::describe(&target)?;
        let built = Built {
            name: name.clone(),
            kind: o.kind().into(),
            inputs,
            sha256,
            bytes,
            members,
            bits_per_weight,
        };
        state::write_built(self.out, &built)?;
        if *o == Output::Imatrix {
            self.load_imatrix(&target, &built)?;
        }
        eprintln!("g4q: release: wrote {name}");
        Ok(())
    }

    fn load_imatrix(&mut self, path: &Path, b: &Built) -> anyhow::Result<()> {
        self.imatrix = Some((Imatrix::read(path)?, b.sha256.clone()));
        Ok(())
    }

    /// The calibration text (the recipe checked it is there when anything reads it).
    fn data(&self) -> anyhow::Result<PathBuf> {
        let d = self
            .recipe
            .awq
            .as_ref()
            .map(|a| &a.data)
            .or_else(|| self.recipe.imatrix.as_ref().and_then(|i| i.data.as_ref()));
        d.map(|d| PathBuf::from(&d.path))
            .ok_or_else(|| internal("no calibration data in the recipe"))
    }

    fn awq_args(&self) -> anyhow::Result<AwqArgs> {
        let a = (self.recipe.awq.as_ref()).ok_or_else(|| internal("no AWQ in the recipe"))?;
        Ok(AwqArgs {
            group_size: a.group_size,
            awq_tokens: a.awq_tokens,
            no_clip: a.no_clip,
            mixed_groups: false,
        })
    }

    /// The checkpoint the GGUF files and the imatrix read: AWQ-scaled with `--awq`.
    fn gguf_source(&mut self) -> anyhow::Result<&Checkpoint> {
        if !self.recipe.awq.as_ref().is_some_and(|a| a.gguf) {
            return Ok(&self.ckpt);
        }
        if self.scaled.is_none() {
            let data = self.data()?;
            let args = self.awq_args()?;
            let spot = self.out.join("awq-scaled");
            self.scaled = Some(awq::scaled_checkpoint(
                self.model, &self.ckpt, &data, &spot, &args,
            )?);
        }
        Ok(&self.scaled.as_ref().expect("made above").1)
    }

    /// Writes `o` to `target`; returns its bits per weight.
    fn make(&mut self, o: &Output, target: &Path) -> anyhow::Result<Option<f64>> {
        match o {
            Output::Imatrix => {
                let im = self.recipe.imatrix.as_ref();
                let im = im.ok_or_else(|| internal("no imatrix in the recipe"))?;
                let computed = match (&im.file, &im.data) {
                    (Some(file), _) => Imatrix::read(Path::new(&file.path))?,
                    (None, Some(data)) => {
                        let chunking = Chunking {
                            ctx: im.ctx.unwrap_or(512),
                            chunks: im.chunks,
                            max_memory: verify::spill::DEFAULT_MAX_MEMORY,
                        };
                        let model = self.model;
                        let src = self.gguf_source()?;
                        imatrix::compute(model, src, Path::new(&data.path), &chunking)?
                    }
                    (None, None) => return Err(internal("imatrix recipe without a source")),
                };
                computed
                    .write_gguf(target)
                    .with_context(|| format!("writing {}", target.display()))?;
                Ok(None)
            }
            Output::Gguf(ftype) => {
                let ftype = *ftype;
                self.gguf_source()?;
                let src = match &self.scaled {
                    Some((_, s)) => s,
                    None => &self.ckpt,
                };
                let rows = write_gguf(src, ftype, self.imatrix.as_ref(), target)?;
                Ok(Some(bits(
                    rows.iter().map(|r| r.bytes).sum(),
                    params(&rows),
                )))
            }
            Output::Awq { .. } => {
                let data = self.data()?;
                awq::write_int4(self.model, Some(&data), target, &self.awq_args()?)?;
                self.folder_bits(target, &["safetensors"])
            }
            Output::Onnx(ty) => {
                let opts = OnnxOptions {
                    ty: *ty,
                    block_size: ONNX_BLOCK_SIZE,
                    accuracy_level: ONNX_ACCURACY_LEVEL,
                    embedding_bits: ONNX_EMBEDDING_BITS,
                    clips: Default::default(),
                };
                onnx_release::write(&self.ckpt, Some(target), &opts)
                    .with_context(|| format!("writing {}", target.display()))?;
                self.folder_bits(target, &["onnx", "data"])
            }
            Output::Mmproj(ty) => {
                // The writer of `g4q convert --mmproj`, on the checkpoint as given (`--awq`
                // scales text-model weights only).
                let tensors = convert::mmproj::write(&self.ckpt, target, *ty)
                    .with_context(|| format!("writing {}", target.display()))?;
                let weights = tensors
                    .iter()
                    .map(|t| t.shape.iter().product::<usize>() as u64)
                    .sum();
                Ok(Some(bits(tensors.iter().map(|t| t.bytes).sum(), weights)))
            }
        }
    }

    /// Bits per text-model weight of a folder's weight files (those with `exts`).
    fn folder_bits(&self, dir: &Path, exts: &[&str]) -> anyhow::Result<Option<f64>> {
        let mut bytes = 0u64;
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if exts.contains(&ext) {
                bytes += std::fs::metadata(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .len();
            }
        }
        let rows = gguf_release::plan(&self.ckpt, &gguf_options(FileType::AllF32, None, None))?;
        Ok(Some(bits(bytes, params(&rows))))
    }
}

/// The GGUF options of a release file: the type's llama.cpp mix, the imatrix recorded under
/// its name in the release.
fn gguf_options<'a>(
    ftype: FileType,
    imatrix: Option<&'a Imatrix>,
    progress: Option<&'a dyn Fn(usize, usize)>,
) -> ReleaseOptions<'a> {
    ReleaseOptions {
        ftype,
        mix: MixOptions {
            pure: false,
            has_imatrix: imatrix.is_some(),
            overrides: Vec::new(),
            token_embedding_type: None,
            output_tensor_type: None,
            // `g4q convert`'s default (no `--intermediate`), as the card's commands run it.
            intermediate: None,
        },
        imatrix: imatrix.map(|im| (im, IMATRIX_FILE.to_string())),
        progress,
    }
}

fn write_gguf(
    ckpt: &Checkpoint,
    ftype: FileType,
    imatrix: Option<&(Imatrix, String)>,
    target: &Path,
) -> anyhow::Result<Vec<PlanRow>> {
    let bar = progress::bar(0, ftype.name());
    let tick = |done: usize, all: usize| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    };
    let opts = gguf_options(ftype, imatrix.map(|(im, _)| im), Some(&tick));
    let rows = gguf_release::write(ckpt, target, &opts)
        .with_context(|| format!("writing {}", target.display()))?;
    bar.finish_and_clear();
    Ok(rows)
}

fn params(rows: &[PlanRow]) -> u64 {
    rows.iter()
        .map(|r| r.tensor.shape.iter().product::<usize>() as u64)
        .sum()
}

fn bits(bytes: u64, params: u64) -> f64 {
    if params == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / params as f64
    }
}
