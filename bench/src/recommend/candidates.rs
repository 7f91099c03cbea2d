//! The candidates: every GGUF mix g4q writes (llama-quantize's file types), each also with the
//! importance matrix when one is given, and with AWQ scales folded in (`g4q convert --awq`)
//! when AWQ calibration text is given (then with both), plus the AWQ int4 compressed-tensors
//! folder (`--format awq`) and the ONNX int4 folder (`--format onnx --type int4`); each sized
//! exactly from the plan of the checkpoint. Or the GGUF files already written in a release
//! folder.

use std::path::{Path, PathBuf};

use convert::{Checkpoint, Gemma4Config};
use quantize::{FileType, Imatrix};

use super::folders;
use crate::estimate::{self, ModelTensor};

/// The suffix of a candidate made with the importance matrix (`Q4_K_M-imatrix`).
pub const IMATRIX_SUFFIX: &str = "-imatrix";

/// The suffix of a candidate made with AWQ scales folded in (`Q4_K_M-awq`; with the
/// importance matrix too, `Q4_K_M-awq-imatrix`).
pub const AWQ_SUFFIX: &str = "-awq";

/// What a planned candidate's name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A GGUF file: `g4q convert --type ftype`, with `--imatrix` and/or `--awq`.
    Gguf {
        ftype: FileType,
        imatrix: bool,
        awq: bool,
    },
    /// The AWQ int4 compressed-tensors folder (`g4q convert --format awq`) at this group size.
    AwqInt4 { group: usize },
    /// The ONNX int4 folder (`g4q convert --format onnx --type int4`) at this block size.
    OnnxInt4 { block: usize },
}

impl Planned {
    /// The candidate name: `Q4_K_M`, `Q4_K_M-imatrix`, `Q4_K_M-awq`, `Q4_K_M-awq-imatrix`,
    /// `AWQ_INT4_G128`, `ONNX_INT4_B32`.
    pub fn name(&self) -> String {
        match *self {
            Planned::Gguf {
                ftype,
                imatrix,
                awq,
            } => format!(
                "{}{}{}",
                ftype.name(),
                if awq { AWQ_SUFFIX } else { "" },
                if imatrix { IMATRIX_SUFFIX } else { "" }
            ),
            Planned::AwqInt4 { group } => folders::awq_name(group),
            Planned::OnnxInt4 { block } => folders::onnx_name(block),
        }
    }
}

/// The folder a folder candidate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folder {
    AwqInt4 { group: usize },
    OnnxInt4 { block: usize },
}

/// One release the recommendation weighs.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// `Q4_K_M`, `Q4_K_M-imatrix`, `Q4_K_M-awq`, `AWQ_INT4_G128`, …; for a release file whose
    /// name is taken, its file stem.
    pub name: String,
    /// The mix of a GGUF candidate, when known (planned, or read from a file's
    /// `general.file_type`).
    pub ftype: Option<FileType>,
    /// Whether the importance matrix is (or was) used.
    pub imatrix: bool,
    /// Whether AWQ scales are folded in (`g4q convert --awq`).
    pub awq: bool,
    /// `Some` for the AWQ int4 and ONNX int4 folders; `None` for a GGUF file.
    pub folder: Option<Folder>,
    /// The file or folder, for a release folder's candidate (or once `--evaluate` wrote it).
    pub file: Option<PathBuf>,
    /// sha256 of the file: of the release file, or of the file `--evaluate` wrote and scored.
    pub sha256: Option<String>,
    /// The tensors (formats and exact bytes), from the plan or the file's header.
    pub tensors: Vec<ModelTensor>,
    /// Why `--evaluate` could not score it (a weight or a logit that is not finite): it is
    /// then listed as not measured with this reason.
    pub unscored: Option<String>,
}

impl Candidate {
    /// Bytes of tensor data (what `--dry-run` totals; a file adds its header).
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    /// Bits per weight over every tensor.
    pub fn bits_per_weight(&self) -> f64 {
        let values: f64 = self
            .tensors
            .iter()
            .map(|t| t.dims.iter().map(|&d| d as f64).product::<f64>())
            .sum();
        if values > 0.0 {
            8.0 * self.bytes() as f64 / values
        } else {
            0.0
        }
    }
}

/// Which candidates beyond the plain GGUF mixes a run offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// An importance matrix is given: each quantized mix again with it.
    pub imatrix: bool,
    /// AWQ calibration text is given: each quantized mix again with `--awq` (and with
    /// `--awq` and the importance matrix), and the AWQ int4 folder at this group size.
    pub awq_group: Option<usize>,
    /// The ONNX int4 folder at this block size.
    pub onnx_block: Option<usize>,
}

/// Every candidate name, in llama-quantize's order: each file type, then each quantized one
/// with [`IMATRIX_SUFFIX`], with [`AWQ_SUFFIX`], with both, as `offer` allows; then the AWQ
/// int4 and ONNX int4 folders.
pub fn all_names(offer: Offer) -> Vec<String> {
    let quantized = || FileType::all().filter(|f| f.default_type().is_quantized());
    let gguf = |ftype, imatrix, awq| {
        Planned::Gguf {
            ftype,
            imatrix,
            awq,
        }
        .name()
    };
    let mut v: Vec<String> = FileType::all().map(|f| gguf(f, false, false)).collect();
    if offer.imatrix {
        v.extend(quantized().map(|f| gguf(f, true, false)));
    }
    if let Some(group) = offer.awq_group {
        v.extend(quantized().map(|f| gguf(f, false, true)));
        if offer.imatrix {
            v.extend(quantized().map(|f| gguf(f, true, true)));
        }
        v.push(Planned::AwqInt4 { group }.name());
    }
    if let Some(block) = offer.onnx_block {
        v.push(Planned::OnnxInt4 { block }.name());
    }
    v
}

/// What a candidate name stands for (`Q4_K_M-awq-imatrix` → Q4_K_M with AWQ and the
/// importance matrix; `AWQ_INT4_G128` → the AWQ int4 folder at group 128).
pub fn parse_name(name: &str) -> Result<Planned, String> {
    if let Some((awq, size)) = folders::parse_folder_name(name) {
        return Ok(if awq {
            Planned::AwqInt4 { group: size }
        } else {
            Planned::OnnxInt4 { block: size }
        });
    }
    let (base, imatrix) = match name.strip_suffix(IMATRIX_SUFFIX) {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (base, awq) = match base.strip_suffix(AWQ_SUFFIX) {
        Some(b) => (b, true),
        None => (base, false),
    };
    let ftype: FileType = base.parse()?;
    if (imatrix || awq) && !ftype.default_type().is_quantized() {
        return Err(format!("{name}: {} is not quantized", ftype.name()));
    }
    Ok(Planned::Gguf {
        ftype,
        imatrix,
        awq,
    })
}

/// The candidates `--candidates` keeps of `available` (comma-separated names, canonical or as
/// `FileType` parses them: `q4_k` is `Q4_K_M`), in the order given; all when `None`. A name that
/// is not available is an error that lists them.
pub fn narrow(available: &[String], list: Option<&str>) -> Result<Vec<String>, String> {
    let Some(list) = list else {
        return Ok(available.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let canonical = match parse_name(item) {
            Ok(p) => p.name(),
            Err(_) => item.to_string(),
        };
        let found = available
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&canonical) || a.eq_ignore_ascii_case(item));
        match found {
            Some(a) if !out.contains(a) => out.push(a.clone()),
            Some(_) => {}
            None => {
                return Err(format!(
                    "--candidates: '{item}' is not a candidate here (expected one of {})",
                    available.join(", ")
                ))
            }
        }
    }
    if out.is_empty() {
        return Err("--candidates: nothing selected".into());
    }
    Ok(out)
}

/// The planned candidate `name` of `ckpt` (see [`parse_name`]); its importance matrix is
/// `imatrix`, which an `-imatrix` name requires. An `-awq` GGUF candidate has the plan of the
/// same mix without AWQ: the scales change values, not types or shapes.
pub fn plan(
    ckpt: &Checkpoint,
    name: &str,
    imatrix: Option<&(Imatrix, String)>,
) -> Result<Candidate, String> {
    let planned = parse_name(name)?;
    let mut c = Candidate {
        name: name.to_string(),
        ftype: None,
        imatrix: false,
        awq: false,
        folder: None,
        file: None,
        sha256: None,
        tensors: Vec::new(),
        unscored: None,
    };
    match planned {
        Planned::Gguf {
            ftype,
            imatrix: use_im,
            awq,
        } => {
            let im = match (use_im, imatrix) {
                (true, None) => return Err(format!("{name} needs --imatrix")),
                (true, Some((im, file))) => Some((im, file.clone())),
                (false, _) => None,
            };
            let opts = quantize::gguf_release::ReleaseOptions {
                ftype,
                mix: Default::default(),
                imatrix: im,
                progress: None,
            };
            c.ftype = Some(ftype);
            c.imatrix = use_im;
            c.awq = awq;
            c.tensors = estimate::plan_tensors(ckpt, &opts)?;
        }
        Planned::AwqInt4 { group } => {
            c.awq = true;
            c.folder = Some(Folder::AwqInt4 { group });
            c.tensors = folders::awq_tensors(ckpt, group)?;
        }
        Planned::OnnxInt4 { block } => {
            c.folder = Some(Folder::OnnxInt4 { block });
            c.tensors = folders::onnx_tensors(ckpt, block)?;
        }
    }
    Ok(c)
}

/// Whether `dir` is a release folder (it holds `*.gguf` files, or AWQ int4 or ONNX release
/// folders) rather than a checkpoint.
pub fn is_release_folder(dir: &Path) -> bool {
    !gguf_files(dir).unwrap_or_default().is_empty()
        || !release_subfolders(dir).unwrap_or_default().is_empty()
}

fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    Ok(files)
}

/// The AWQ int4 and ONNX release folders inside `dir`, sorted by name.
fn release_subfolders(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| folders::is_folder_release(p))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The key widths of two configs agree: the same model (a GGUF file's config is read back
/// from its metadata, a folder's from its config.json).
fn same_model(a: &Gemma4Config, b: &Gemma4Config) -> bool {
    (
        a.hidden_size,
        a.num_hidden_layers,
        a.vocab_size,
        a.num_attention_heads,
    ) == (
        b.hidden_size,
        b.num_hidden_layers,
        b.vocab_size,
        b.num_attention_heads,
    )
}

/// The model files of a release folder as candidates: its GGUF files (sorted by file name;
/// importance matrices and vision/audio projectors, which are no text model to rank, left out;
/// see [`from_files`]), then its AWQ int4 and ONNX folders (sized from their headers, see
/// [`folders::read_folder`]). Where two candidates would share a name, both go by their file
/// names.
pub fn from_release(
    dir: &Path,
    fingerprint: &dyn Fn(&Path) -> Result<String, String>,
) -> Result<(Gemma4Config, Vec<Candidate>), String> {
    let files = gguf_files(dir)?;
    let mut models = Vec::with_capacity(files.len());
    for f in files {
        let file = convert::gguf::GgufFile::open(&f).map_err(|e| e.to_string())?;
        let kind = file.metadata().get("general.type").and_then(|v| v.as_str());
        if !matches!(kind, Some("imatrix" | "mmproj")) {
            models.push(f);
        }
    }
    let subs = release_subfolders(dir)?;
    if models.is_empty() && subs.is_empty() {
        return Err(format!(
            "{}: no *.gguf model files or AWQ/ONNX folders",
            dir.display()
        ));
    }
    let (mut cfg, mut out) = if models.is_empty() {
        (None, Vec::new())
    } else {
        let (c, v) = from_files(&models, fingerprint)?;
        (Some(c), v)
    };
    for sub in subs {
        let f = folders::read_folder(&sub)?;
        match &cfg {
            Some(c) if !same_model(c, &f.config) => {
                return Err(format!(
                    "{}: not the same model as the release's other files",
                    sub.display()
                ))
            }
            Some(_) => {}
            None => cfg = Some(f.config.clone()),
        }
        let folder = match parse_name(&f.name) {
            Ok(Planned::AwqInt4 { group }) => Some(Folder::AwqInt4 { group }),
            Ok(Planned::OnnxInt4 { block }) => Some(Folder::OnnxInt4 { block }),
            _ => None,
        };
        out.push(Candidate {
            name: f.name,
            ftype: None,
            imatrix: false,
            awq: f.awq,
            folder,
            file: Some(sub.clone()),
            sha256: Some(fingerprint(&sub)?),
            tensors: f.tensors,
            unscored: None,
        });
    }
    name_duplicates_by_file(&mut out);
    Ok((cfg.expect("a model file or folder"), out))
}

/// Where two candidates share a name, both go by their file (or folder) names, stems for files.
fn name_duplicates_by_file(out: &mut [Candidate]) {
    let names: Vec<String> = out.iter().map(|c| c.name.clone()).collect();
    for c in out.iter_mut() {
        if names.iter().filter(|n| **n == c.name).count() > 1 {
            let f = c.file.as_ref().expect("release candidates have files");
            c.name = f
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        }
    }
}

/// Release files as candidates, named by their `general.file_type` (plus [`IMATRIX_SUFFIX`]
/// when `quantize.imatrix.file` is set) or, where two files would share a name, by their file
/// stems; and the config of the model they hold (every file must hold the same model).
/// `fingerprint` gives a file's sha256.
pub fn from_files(
    files: &[PathBuf],
    fingerprint: &dyn Fn(&Path) -> Result<String, String>,
) -> Result<(Gemma4Config, Vec<Candidate>), String> {
    if files.is_empty() {
        return Err("no release files".into());
    }
    let mut cfg0: Option<Gemma4Config> = None;
    let mut out: Vec<Candidate> = Vec::new();
    for f in files {
        let file = convert::gguf::GgufFile::open(f).map_err(|e| e.to_string())?;
        let md = file.metadata();
        let ftype = md
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .and_then(|id| FileType::all().find(|t| u64::from(t.id()) == id));
        let imatrix = md.get("quantize.imatrix.file").is_some();
        let (cfg, tensors) = estimate::from_gguf(f)?;
        match &cfg0 {
            None => cfg0 = Some(cfg),
            Some(c) if *c != cfg => {
                return Err(format!(
                    "{}: not the same model as {}",
                    f.display(),
                    files[0].display()
                ))
            }
            Some(_) => {}
        }
        let stem = f
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        let name = match ftype {
            Some(t) => format!("{}{}", t.name(), if imatrix { IMATRIX_SUFFIX } else { "" }),
            None => stem,
        };
        out.push(Candidate {
            name,
            ftype,
            imatrix,
            awq: false,
            folder: None,
            file: Some(f.clone()),
            sha256: Some(fingerprint(f)?),
            tensors,
            unscored: None,
        });
    }
    // Two files of one mix: both go by their file stems.
    name_duplicates_by_file(&mut out);
    Ok((cfg0.expect("at least one file"), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_narrow() {
        let imatrix = Offer {
            imatrix: true,
            ..Offer::default()
        };
        let all = all_names(imatrix);
        assert_eq!(all.len(), 19 + 16);
        let gguf = |ftype, imatrix, awq| Planned::Gguf {
            ftype,
            imatrix,
            awq,
        };
        assert_eq!(
            parse_name("Q4_K_M-imatrix").unwrap(),
            gguf(FileType::Q4KM, true, false)
        );
        assert!(parse_name("F16-imatrix").is_err());
        assert!(parse_name("Q9_K").is_err());
        let n = narrow(&all, Some("q4_k, Q8_0,IQ4_XS-imatrix,Q8_0")).unwrap();
        assert_eq!(n, ["Q4_K_M", "Q8_0", "IQ4_XS-imatrix"]);
        let err = narrow(&all_names(Offer::default()), Some("Q4_K_M-imatrix")).unwrap_err();
        assert!(err.contains("'Q4_K_M-imatrix' is not a candidate"), "{err}");
        assert!(narrow(&all, Some(" , ")).is_err());
        // With AWQ and ONNX: each quantized mix with -awq and -awq-imatrix, and both folders.
        let every = all_names(Offer {
            imatrix: true,
            awq_group: Some(128),
            onnx_block: Some(32),
        });
        assert_eq!(every.len(), 19 + 3 * 16 + 2);
        assert_eq!(every[every.len() - 2..], ["AWQ_INT4_G128", "ONNX_INT4_B32"]);
        assert_eq!(
            parse_name("Q4_K_M-awq-imatrix").unwrap(),
            gguf(FileType::Q4KM, true, true)
        );
        assert_eq!(parse_name("Q4_K_M-awq").unwrap().name(), "Q4_K_M-awq");
        assert!(parse_name("BF16-awq").is_err());
        assert!(parse_name("Q4_K_M-imatrix-awq").is_err());
        let n = narrow(&every, Some("q4_k-awq,awq_int4_g128,onnx_int4_b32")).unwrap();
        assert_eq!(n, ["Q4_K_M-awq", "AWQ_INT4_G128", "ONNX_INT4_B32"]);
        assert!(narrow(&every, Some("AWQ_INT4_G64")).is_err());
        println!("checked 15 name cases");
    }
}
