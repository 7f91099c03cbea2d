//! The outputs a recipe makes, in release order, their names, and the split into shards.
//!
//! Adding an output kind (the `mmproj` file once `g4q convert --mmproj` exists) is a variant
//! here with its name and `verified() == false` (llama.cpp's projector is not a text model to
//! score), a build arm in `build.rs`, and an entry in [`list`].

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
}

impl Output {
    /// File (or folder) name inside the release: `NAME-Q4_K_M.gguf`, `NAME-AWQ-int4-g128`,
    /// `NAME-ONNX-int4`.
    pub fn file_name(&self, name: &str) -> String {
        match self {
            Output::Imatrix => IMATRIX_FILE.to_string(),
            Output::Gguf(t) => format!("{name}-{}.gguf", t.name()),
            Output::Awq { group_size } => format!("{name}-AWQ-int4-g{group_size}"),
            Output::Onnx(t) => format!("{name}-ONNX-{}", t.name()),
        }
    }

    /// Whether it is a folder.
    pub fn is_folder(&self) -> bool {
        matches!(self, Output::Awq { .. } | Output::Onnx(_))
    }

    /// Whether it is a model the verification pass scores.
    pub fn verified(&self) -> bool {
        !matches!(self, Output::Imatrix)
    }

    /// `imatrix`, `gguf`, `awq` or `onnx`.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Imatrix => "imatrix",
            Output::Gguf(_) => "gguf",
            Output::Awq { .. } => "awq",
            Output::Onnx(_) => "onnx",
        }
    }

    /// The type as the model card names it.
    pub fn type_label(&self) -> String {
        match self {
            Output::Imatrix => "importance matrix".into(),
            Output::Gguf(t) => t.name().into(),
            Output::Awq { group_size } => format!("AWQ int4 g{group_size}"),
            Output::Onnx(t) => format!("ONNX {}", t.name()),
        }
    }
}

/// Every output of `recipe`, in release order: the imatrix, the GGUF types as given, the AWQ
/// folder, the ONNX folder.
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

/// The outputs shard `i` of `n` makes: every `n`-th model file starting at the `i`-th
/// (round robin over the release order, so the big types spread out), plus the importance
/// matrix when the shard has a GGUF file. Every such shard computes the imatrix itself, with the
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
        all.push(Output::Onnx(OnnxType::Int4));
        let mut cases = 0;
        for n in 1..=8 {
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
        assert!(shard(&all, 0, 9).is_err());
        assert!(shard(&all, 3, 3).is_err());
        println!("{cases} shards checked");
    }
}
