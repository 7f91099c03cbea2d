//! The candidates: every GGUF mix g4q writes (llama-quantize's file types), each also with the
//! importance matrix when one is given, sized exactly from the `g4q convert --dry-run` plan of
//! the checkpoint; or the GGUF files already written in a release folder.

use std::path::{Path, PathBuf};

use convert::{Checkpoint, Gemma4Config};
use quantize::{FileType, Imatrix};

use crate::estimate::{self, ModelTensor};

/// The suffix of a candidate made with the importance matrix (`Q4_K_M-imatrix`).
pub const IMATRIX_SUFFIX: &str = "-imatrix";

/// One release the recommendation weighs.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// `Q4_K_M`, `Q4_K_M-imatrix`, …; for a release file whose name is taken, its file stem.
    pub name: String,
    /// The mix, when known (planned, or read from a file's `general.file_type`).
    pub ftype: Option<FileType>,
    /// Whether the importance matrix is (or was) used.
    pub imatrix: bool,
    /// The file, for a release folder's candidate.
    pub file: Option<PathBuf>,
    /// sha256 of the file: of the release file, or of the file `--evaluate` wrote and scored.
    pub sha256: Option<String>,
    /// The tensors (types and exact bytes), from the plan or the file's header.
    pub tensors: Vec<ModelTensor>,
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

/// Every candidate name, in llama-quantize's order: each file type, then (with an importance
/// matrix) each quantized one again with [`IMATRIX_SUFFIX`].
pub fn all_names(with_imatrix: bool) -> Vec<String> {
    let mut v: Vec<String> = FileType::all().map(|f| f.name().to_string()).collect();
    if with_imatrix {
        v.extend(
            FileType::all()
                .filter(|f| f.default_type().is_quantized())
                .map(|f| format!("{}{IMATRIX_SUFFIX}", f.name())),
        );
    }
    v
}

/// The mix and imatrix use a candidate name stands for (`Q4_K_M-imatrix` → (Q4_K_M, true)).
pub fn parse_name(name: &str) -> Result<(FileType, bool), String> {
    let (base, imatrix) = match name.strip_suffix(IMATRIX_SUFFIX) {
        Some(b) => (b, true),
        None => (name, false),
    };
    let ft: FileType = base.parse()?;
    if imatrix && !ft.default_type().is_quantized() {
        return Err(format!("{name}: {} is not quantized", ft.name()));
    }
    Ok((ft, imatrix))
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
            Ok((ft, im)) => format!("{}{}", ft.name(), if im { IMATRIX_SUFFIX } else { "" }),
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
/// `imatrix`, which a `-imatrix` name requires.
pub fn plan(
    ckpt: &Checkpoint,
    name: &str,
    imatrix: Option<&(Imatrix, String)>,
) -> Result<Candidate, String> {
    let (ftype, use_im) = parse_name(name)?;
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
    Ok(Candidate {
        name: name.to_string(),
        ftype: Some(ftype),
        imatrix: use_im,
        file: None,
        sha256: None,
        tensors: estimate::plan_tensors(ckpt, &opts)?,
    })
}

/// Whether `dir` is a release folder (it holds `*.gguf` files) rather than a checkpoint.
pub fn is_release_folder(dir: &Path) -> bool {
    !gguf_files(dir).unwrap_or_default().is_empty()
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

/// The GGUF model files of a release folder (sorted by file name; importance matrices and
/// vision/audio projectors, which are no text model to rank, left out) as candidates: see
/// [`from_files`].
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
    if models.is_empty() {
        return Err(format!("{}: no *.gguf model files", dir.display()));
    }
    from_files(&models, fingerprint)
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
            file: Some(f.clone()),
            sha256: Some(fingerprint(f)?),
            tensors,
        });
    }
    // Two files of one mix: both go by their file stems.
    let names: Vec<String> = out.iter().map(|c| c.name.clone()).collect();
    for c in &mut out {
        if names.iter().filter(|n| **n == c.name).count() > 1 {
            let f = c.file.as_ref().expect("release candidates have files");
            c.name = f
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        }
    }
    Ok((cfg0.expect("at least one file"), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_narrow() {
        let all = all_names(true);
        assert_eq!(all.len(), 19 + 16);
        assert_eq!(
            parse_name("Q4_K_M-imatrix").unwrap(),
            (FileType::Q4KM, true)
        );
        assert!(parse_name("F16-imatrix").is_err());
        assert!(parse_name("Q9_K").is_err());
        let n = narrow(&all, Some("q4_k, Q8_0,IQ4_XS-imatrix,Q8_0")).unwrap();
        assert_eq!(n, ["Q4_K_M", "Q8_0", "IQ4_XS-imatrix"]);
        let err = narrow(&all_names(false), Some("Q4_K_M-imatrix")).unwrap_err();
        assert!(err.contains("'Q4_K_M-imatrix' is not a candidate"), "{err}");
        assert!(narrow(&all, Some(" , ")).is_err());
        println!("checked 7 name cases");
    }
}
