//! `Checkpoint`: a Gemma 4 model folder as the hub ships it, opened lazily.
//!
//! `config.json` plus either `model.safetensors` or `model.safetensors.index.json` and its
//! shards. Every file is mmapped; nothing is read until a tensor's bytes are touched, so opening
//! a 60 GB checkpoint costs a few header parses. Opening checks every text tensor against the
//! catalogue of the config (name, dtype, shape, presence) so that later stages can trust it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::catalogue::{self, NameClass, Need, TensorSpec};
use crate::config::Gemma4Config;
use crate::error::{ConvertError, Result};
use crate::stfile::StFile;
use crate::tensor::{DType, TensorView};

/// The single-file weights name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Why a tensor of the files is not served as a text tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkippedKind {
    /// `model.vision_tower.*` or `model.embed_vision.*`.
    Vision,
    /// `model.audio_tower.*` or `model.embed_audio.*`.
    Audio,
    /// `k_proj`/`v_proj`/`k_norm` of a KV-shared layer: shipped by Google, never used.
    UnusedSharedKv,
}

/// A tensor that is recognised but not part of the text model g4q runs.
#[derive(Clone, Debug)]
pub struct SkippedTensor {
    /// Name as stored in the file.
    pub name: String,
    pub kind: SkippedKind,
    /// The header's dtype string.
    pub dtype: String,
    pub shape: Vec<usize>,
}

impl SkippedTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A validated text tensor: where its bytes are.
struct TextEntry {
    name: String,
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// An opened checkpoint folder. Cheap to share across threads (`Sync`): tensor views borrow
/// the read-only mappings.
pub struct Checkpoint {
    dir: PathBuf,
    config: Gemma4Config,
    /// `model.safetensors` or the index: the file named when a tensor is missing.
    source: PathBuf,
    prefix: &'static str,
    files: Vec<StFile>,
    text: Vec<TextEntry>,
    by_name: HashMap<String, usize>,
    skipped: Vec<SkippedTensor>,
    /// The unused `k_proj`/`v_proj`/`k_norm` of KV-shared layers that Google's files carry:
    /// never used by the forward pass, but llama.cpp's converter copies them into the GGUF.
    unused_kv: Vec<TextEntry>,
}

impl Checkpoint {
    /// Opens a model folder: parses `config.json`, maps the weights (single file or sharded)
    /// and validates every text tensor against the catalogue of the config.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ConvertError::io(&config_path, e))?;
        let config = Gemma4Config::from_json_str(&text, &config_path.display().to_string())?;
        let catalogue = catalogue::text_catalogue(&config)?;

        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        let (source, files, located) = if single.is_file() {
            let file = StFile::open(&single)?;
            let located = locate_single(&file);
            (single, vec![file], located)
        } else if index.is_file() {
            let (files, located) = open_sharded(dir, &index)?;
            (index, files, located)
        } else {
            return Err(ConvertError::format(
                dir,
                format!("holds neither {SINGLE_FILE} nor {INDEX_FILE}"),
            ));
        };

        let prefix = catalogue::text_prefix(located.keys().map(String::as_str));
        let mut ck = Checkpoint {
            dir: dir.to_path_buf(),
            config,
            source,
            prefix,
            files,
            text: Vec::new(),
            by_name: HashMap::new(),
            skipped: Vec::new(),
            unused_kv: Vec::new(),
        };
        ck.validate(&catalogue, &located)?;
        Ok(ck)
    }

    /// Checks every tensor of the files against the catalogue and fills the text table.
    fn validate(&mut self, catalogue: &[TensorSpec], located: &Located) -> Result<()> {
        let spec_of: HashMap<&str, &TensorSpec> =
            catalogue.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut found: HashMap<String, TextEntry> = HashMap::new();
        for (hf_name, &(fi, ti)) in located {
            let file = &self.files[fi];
            let raw = &file.tensors[ti];
            let skip = |kind| SkippedTensor {
                name: hf_name.clone(),
                kind,
                dtype: raw.dtype.clone(),
                shape: raw.shape.clone(),
            };
            let canonical = match catalogue::classify(hf_name, self.prefix) {
                NameClass::Vision => {
                    self.skipped.push(skip(SkippedKind::Vision));
                    continue;
                }
                NameClass::Audio => {
                    self.skipped.push(skip(SkippedKind::Audio));
                    continue;
                }
                NameClass::Unknown => {
                    return Err(ConvertError::tensor(
                        &file.path,
                        hf_name,
                        format!(
                            "not a Gemma 4 tensor name (text tensors here start with '{}')",
                            self.prefix
                        ),
                    ))
                }
                NameClass::Text(c) => c,
            };
            let spec = spec_of.get(canonical.as_str()).ok_or_else(|| {
                ConvertError::tensor(
                    &file.path,
                    hf_name,
                    format!(
                        "unexpected text tensor: config.json ({} layers, {}) has no such tensor",
                        self.config.num_hidden_layers,
                        self.config.variant().cli_name()
                    ),
                )
            })?;
            if spec.need == Need::Ignored {
                self.skipped.push(skip(SkippedKind::UnusedSharedKv));
                if let Some(dtype) = DType::from_safetensors_name(&raw.dtype) {
                    self.unused_kv.push(TextEntry {
                        name: canonical,
                        file: fi,
                        dtype,
                        shape: raw.shape.clone(),
                        start: raw.start,
                        end: raw.end,
                    });
                }
                continue;
            }
            let dtype = DType::from_safetensors_name(&raw.dtype).ok_or_else(|| {
                ConvertError::tensor(
                    &file.path,
                    hf_name,
                    format!("dtype {} is not supported (F32, F16 or BF16)", raw.dtype),
                )
            })?;
            if !catalogue::shape_matches(&spec.shape, &raw.shape) {
                return Err(ConvertError::tensor(
                    &file.path,
                    hf_name,
                    format!(
                        "shape {:?} disagrees with config.json, which implies {:?}",
                        raw.shape, spec.shape
                    ),
                ));
            }
            found.insert(
                canonical.clone(),
                TextEntry {
                    name: canonical,
                    file: fi,
                    dtype,
                    shape: spec.shape.clone(),
                    start: raw.start,
                    end: raw.end,
                },
            );
        }
        for spec in catalogue {
            match found.remove(&spec.name) {
                Some(entry) => {
                    self.by_name.insert(entry.name.clone(), self.text.len());
                    self.text.push(entry);
                }
                None if spec.need == Need::Required => {
                    return Err(ConvertError::tensor(
                        &self.source,
                        self.hf_name(&spec.name),
                        format!(
                            "missing: config.json requires it with shape {:?}",
                            spec.shape
                        ),
                    ))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The HF name of a canonical text name in this checkpoint's layout.
    pub fn hf_name(&self, canonical: &str) -> String {
        if canonical == catalogue::LM_HEAD {
            canonical.to_string()
        } else {
            format!("{}{canonical}", self.prefix)
        }
    }

    /// The parsed text config.
    pub fn config(&self) -> &Gemma4Config {
        &self.config
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies those of `names` that the model folder holds (tokenizer and other side files a
    /// release carries along) into `out_dir`, each written afresh through
    /// [`crate::output::write_file`] so it gets the usual mode, not the source's.
    pub fn copy_side_files(&self, names: &[&str], out_dir: &Path) -> Result<()> {
        for name in names {
            let src = self.dir.join(name);
            if src.is_file() {
                let bytes = std::fs::read(&src).map_err(|e| ConvertError::io(&src, e))?;
                crate::output::write_file(&out_dir.join(name), &bytes)?;
            }
        }
        Ok(())
    }

    /// The weight files: the single file, or the shards in the sorted order of their names (as
    /// llama.cpp's converter reads them; see `llama::tensor_plan`).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Text tensor by canonical name (see the catalogue), e.g. `layers.3.self_attn.q_proj.weight`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let entry = self
            .by_name
            .get(name)
            .map(|&i| &self.text[i])
            .or_else(|| self.unused_kv.iter().find(|e| e.name == name))
            .ok_or_else(|| {
                ConvertError::tensor(&self.source, self.hf_name(name), "not in this checkpoint")
            })?;
        let file = &self.files[entry.file];
        Ok(TensorView {
            name: &entry.name,
            file: &file.path,
            dtype: entry.dtype,
            shape: entry.shape.clone(),
            data: &file.mmap[entry.start..entry.end],
        })
    }

    /// Which weight file holds a text tensor (an unused shared K/V one included): its index in
    /// [`Checkpoint::files`], whose order is the sorted order of the shard names. `None` for a
    /// name the checkpoint does not hold.
    pub fn file_index(&self, name: &str) -> Option<usize> {
        self.by_name
            .get(name)
            .map(|&i| &self.text[i])
            .or_else(|| self.unused_kv.iter().find(|e| e.name == name))
            .map(|e| e.file)
    }

    /// Whether the checkpoint holds this text tensor.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Canonical names of the text tensors present, in catalogue order.
    pub fn text_tensors(&self) -> Vec<&str> {
        self.text.iter().map(|e| e.name.as_str()).collect()
    }

    /// Canonical names of the unused K/V tensors of KV-shared layers present in the files (their
    /// bytes are served by [`Checkpoint::tensor`] for converters that copy them).
    pub fn unused_shared_kv(&self) -> impl Iterator<Item = &str> {
        self.unused_kv.iter().map(|e| e.name.as_str())
    }

    /// Tensors recognised and skipped: vision and audio towers, unused KV of shared layers.
    pub fn skipped(&self) -> &[SkippedTensor] {
        &self.skipped
    }

    /// Drops the resident pages of a tensor's bytes (`madvise(MADV_DONTNEED)`), so a reader that
    /// streams layer by layer keeps its RSS at about one layer. Later reads fault the pages back
    /// in from the file. Unknown names and advice failures are ignored: this is a hint.
    pub fn release(&self, name: &str) {
        self.release_rows(name, 0, usize::MAX);
    }

    /// Like [`Checkpoint::release`] for rows `row0 .. row0 + n` only (rows of the last
    /// dimension), so a converter reading a huge tensor in chunks keeps only a chunk resident.
    pub fn release_rows(&self, name: &str, row0: usize, n: usize) {
        let entry = self
            .by_name
            .get(name)
            .map(|&i| &self.text[i])
            .or_else(|| self.unused_kv.iter().find(|e| e.name == name));
        let Some(e) = entry else { return };
        let row_bytes = e.shape.last().copied().unwrap_or(1) * e.dtype.size();
        let start = e
            .start
            .saturating_add(row0.saturating_mul(row_bytes))
            .min(e.end);
        let end = start.saturating_add(n.saturating_mul(row_bytes)).min(e.end);
        if end <= start {
            return;
        }
        let mmap = &self.files[e.file].mmap;
        // SAFETY: the mapping is a read-only, file-backed shared mapping, so DONTNEED only drops
        // clean page-cache references: any later access (including through views that are still
        // borrowed) faults the identical bytes back in from the file. memmap2 widens the range to
        // whole pages, which at worst drops a neighbour's page that is then read again.
        let _ = unsafe {
            mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}

/// Sorts `items` into the order in which llama.cpp's converter (`convert_hf_to_gguf.py`) meets
/// tensors: weight file by weight file in the order of [`Checkpoint::files`] (sorted shard
/// names, as it takes them from the index), and within a file by name (it reads each header
/// sorted). `key` gives an item's file index and name. The GGUF text plan and the mmproj plan
/// both order their tensors with it, so a sharded checkpoint converts like llama.cpp's.
pub fn sort_in_converter_order<T>(items: &mut [T], key: impl Fn(&T) -> (usize, &str)) {
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// HF tensor name → (file index, entry index within that file's header).
type Located = BTreeMap<String, (usize, usize)>;

/// Name → (file 0, entry index) for a single-file checkpoint.
fn locate_single(file: &StFile) -> Located {
    file.tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), (0, i)))
        .collect()
}

/// Opens the shards an index names, in the sorted order of their names, and cross-checks index
/// and headers: every indexed tensor must be in its shard, every shard tensor in the index, and
/// no tensor in two shards.
fn open_sharded(dir: &Path, index: &Path) -> Result<(Vec<StFile>, Located)> {
    let text = std::fs::read_to_string(index).map_err(|e| ConvertError::io(index, e))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| ConvertError::format(index, format!("not valid JSON: {e}")))?;
    let map = root
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::format(index, "has no weight_map object"))?;
    let mut weight_map: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            ConvertError::tensor(index, name, "weight_map value is not a file name")
        })?;
        let mut parts = Path::new(shard).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(ConvertError::tensor(
                index,
                name,
                format!("shard '{shard}' is not a plain file name in the model folder"),
            ));
        }
        weight_map.insert(name, shard);
    }
    let shard_names: BTreeSet<&str> = weight_map.values().copied().collect();
    let mut files = Vec::with_capacity(shard_names.len());
    for shard in &shard_names {
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(ConvertError::format(
                index,
                format!(
                    "names shard '{shard}', which is missing from {}",
                    dir.display()
                ),
            ));
        }
        files.push(StFile::open(&path)?);
    }

    let mut located = Located::new();
    for (fi, file) in files.iter().enumerate() {
        for (ti, t) in file.tensors.iter().enumerate() {
            if let Some(&(other, _)) = located.get(&t.name) {
                return Err(ConvertError::tensor(
                    &file.path,
                    &t.name,
                    format!("also stored in {}", files[other].path.display()),
                ));
            }
            match weight_map.get(t.name.as_str()) {
                Some(s) if *s == file_name(&file.path) => {}
                Some(s) => {
                    return Err(ConvertError::tensor(
                        &file.path,
                        &t.name,
                        format!("the index places it in '{s}'"),
                    ))
                }
                None => {
                    return Err(ConvertError::tensor(
                        &file.path,
                        &t.name,
                        format!("not listed in {INDEX_FILE}"),
                    ))
                }
            }
            located.insert(t.name.clone(), (fi, ti));
        }
    }
    for (name, shard) in &weight_map {
        if !located.contains_key(*name) {
            return Err(ConvertError::tensor(
                dir.join(shard),
                *name,
                format!("listed in {INDEX_FILE} for this shard, but the shard does not hold it"),
            ));
        }
    }
    Ok((files, located))
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}
