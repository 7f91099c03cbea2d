//! The outputs a recipe makes, in release order, their names, and the split into shards.
//!
//! Adding an output kind is a variant here with its name and whether it is scored, a build arm
//! in `build.rs`, a reproduce command in `card.rs`, and an entry in [`list`].

use convert::mmproj::OutType;
use quantize::onnx_release::OnnxType;
use quantize::FileType;

use super::super::usage;
use super::recipe::Recipe;

/// The importance matrix's name in the release (and in each GGUF's `quantize.imatrix.file`,
/// so `g4q convert --imatrix imatrix.gguf` reproduces a file byte for byte).
pub const IMATRIX_FILE: &str = "imatrix.gguf";

/// One output of a release.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The importance matrix the GGUF files were quantized with.
    Imatrix,
    /// A GGUF file of one llama.cpp type.
    Gguf(FileType),
    /// The AWQ int4 compressed-tensors folder.
    Awq { group_size: usize },
    /// The ONNX release folder.
    Onnx(OnnxType),
    /// The vision/audio projector llama.cpp's multimodal tools load beside a GGUF file.
    Mmproj(OutType),
}

impl Output {
    /// File (or folder) name inside the release: `NAME-Q4_K_M.gguf`, `NAME-AWQ-int4-g128`,
    /// `NAME-ONNX-int4`, `mmproj-NAME-F16.gguf` (llama.cpp's converter prefixes `mmproj-` to
    /// the name it would give the text model; tools that look for a projector beside a model
    /// match `mmproj` in the name).
    pub fn file_name(&self, name: &str) -> String {
        match self {
            Output::Imatrix => IMATRIX_FILE.to_string(),
            Output::Gguf(t) => format!("{name}-{}.gguf", t.name()),
            Output::Awq { group_size } => format!("{name}-AWQ-int4-g{group_size}"),
            Output::Onnx(t) => format!("{name}-ONNX-{}", t.name()),
            Output::Mmproj(t) => format!("mmproj-{name}-{}.gguf", mmproj_type_name(*t)),
        }
    }

    /// Whether it is a folder.
    pub fn is_folder(&self) -> bool {
        matches!(self, Output::Awq { .. } | Output::Onnx(_))
    }

    /// Whether it is a model the verification pass scores (the projector holds no text model).
    pub fn verified(&self) -> bool {
        !matches!(self, Output::Imatrix | Output::Mmproj(_))
    }

    /// `imatrix`, `gguf`, `awq`, `onnx` or `mmproj`.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Imatrix => "imatrix",
            Output::Gguf(_) => "gguf",
            Output::Awq { .. } => "awq",
            Output::Onnx(_) => "onnx",
            Output::Mmproj(_) => "mmproj",
        }
    }

    /// The type as the model card names it.
    pub fn type_label(&self) -> String {
        match self {
            Output::Imatrix => "importance matrix".into(),
            Output::Gguf(t) => t.name().into(),
            Output::Awq { group_size } => format!("AWQ int4 g{group_size}"),
            Output::Onnx(t) => format!("ONNX {}", t.name()),
            Output::Mmproj(t) => format!("mmproj {}", mmproj_type_name(*t)),
        }
    }
}

/// A projector type as `--mmproj-type` and file names spell it: F32, F16, BF16, Q8_0 (the
/// llama.cpp file type names, as the GGUF files use).
pub fn mmproj_type_name(t: OutType) -> String {
    t.name().to_ascii_uppercase()
}

/// Every output of `recipe`, in release order: the imatrix, the GGUF types as given, the
/// projector, the AWQ folder, the ONNX folder.
pub fn list(recipe: &Recipe) -> Vec<Output> {
    let mut out = Vec::new();
    if recipe.imatrix.is_some() {
        out.push(Output::Imatrix);
    }
    for t in &recipe.types {
        // The recipe holds names parsed from FileType, so they parse back.
        if let Ok(t) = t.parse::<FileType>() {
            out.push(Output::Gguf(t));
        }
    }
    if let Some(t) = recipe.mmproj.as_deref().and_then(parse_mmproj_type) {
        out.push(Output::Mmproj(t));
    }
    if recipe.formats.iter().any(|f| f == "awq") {
        if let Some(a) = &recipe.awq {
            out.push(Output::Awq {
                group_size: a.group_size,
            });
        }
    }
    if let Some(t) = recipe.onnx_type.as_deref().and_then(OnnxType::parse) {
        out.push(Output::Onnx(t));
    }
    out
}

/// The projector type of a recipe's `mmproj` (a name [`mmproj_type_name`] wrote).
pub fn parse_mmproj_type(s: &str) -> Option<OutType> {
    [OutType::F32, OutType::F16, OutType::BF16, OutType::Q8_0]
        .into_iter()
        .find(|t| mmproj_type_name(*t) == s)
}

/// The outputs shard `i` of `n` makes: every `n`-th model file starting at the `i`-th
/// (round robin over the release order, so the big types spread out), plus the importance
/// matrix when the shard has a quantized GGUF file (the projector does not read it). Every such shard computes the imatrix itself, with the
/// same bytes; `--merge` checks that the copies agree.
pub fn shard(all: &[Output], i: usize, n: usize) -> anyhow::Result<Vec<Output>> {
    let models: Vec<&Output> = all.iter().filter(|o| **o != Output::Imatrix).collect();
    if n == 0 || i >= n {
        return Err(usage(format!("--shard {i}/{n}: need 0 <= I < N")));
    }
    if n > models.len() {
        return Err(usage(format!(
            "--shards {n}: the release has only {} files to split",
            models.len()
        )));
    }
    let mine: Vec<Output> = models
        .iter()
        .enumerate()
        .filter(|(k, _)| k % n == i)
        .map(|(_, o)| (*o).clone())
        .collect();
    let mut out = Vec::new();
    if all.contains(&Output::Imatrix) && mine.iter().any(|o| matches!(o, Output::Gguf(_))) {
        out.push(Output::Imatrix);
    }
    out.extend(mine);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_model_files() {
        let types = [
            "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K",
        ];
        let mut all = vec![Output::Imatrix];
        all.extend(types.iter().map(|t| Output::Gguf(t.parse().unwrap())));
        all.push(Output::Mmproj(OutType::F16));
        all.push(Output::Onnx(OnnxType::Int4));
        // Every split up to one file per shard; the projector's shard gets no imatrix.
        let files = all.len() - 1;
        let mut cases = 0;
        for n in 1..=files {
            let mut seen = Vec::new();
            for i in 0..n {
                let part = shard(&all, i, n).unwrap();
                let has_gguf = part.iter().any(|o| matches!(o, Output::Gguf(_)));
                assert_eq!(part.contains(&Output::Imatrix), has_gguf, "{i}/{n}");
                seen.extend(part.into_iter().filter(|o| *o != Output::Imatrix));
                cases += 1;
            }
            let mut want: Vec<String> = all[1..].iter().map(|o| o.file_name("m")).collect();
            let mut got: Vec<String> = seen.iter().map(|o| o.file_name("m")).collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{n} shards");
        }
        assert!(shard(&all, 0, files + 1).is_err());
        assert!(shard(&all, 3, 3).is_err());
        println!("{cases} shards checked");
    }
}
