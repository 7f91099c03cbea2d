//! Where the oracles are, and what a test does when the one it needs is not there.
//!
//! Three places, in order: `G4Q_FIXTURES` / `G4Q_GOLDEN` when set; `../shared/fixtures` /
//! `../shared/golden` beside the repository when they exist (the full set); else the compact set
//! bundled under `tests/oracles/` (made from the full set by `scripts/make-oracles.sh`; what it
//! leaves out is in `tests/oracles/README.md`). Reading the full set, a missing oracle fails the
//! test as before; reading the bundled set, a test that needs what only the full set holds prints
//! a `SKIPPED:` line saying what is missing and passes. `G4Q_REQUIRE_ORACLES=1` turns every skip,
//! and any use of the bundled set, into a failure: `.ci/run` sets it when the full set is there,
//! so CI cannot go green on a check that did not run.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `crates/testkit`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The full set of one kind of oracle (`fixtures` or `golden`): `var`'s value when set, else
/// `../shared/<kind>` when it is a folder.
pub fn full_set(var: &str, kind: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let shared = repo_root().join("../shared").join(kind);
    shared.is_dir().then_some(shared)
}

/// `(folder, bundled)` for one kind of oracle: the full set, else `tests/oracles/<kind>`.
fn locate(var: &str, kind: &str) -> (PathBuf, bool) {
    match full_set(var, kind) {
        Some(dir) => (dir, false),
        None => (bundled_root().join(kind), true),
    }
}

/// The folder of the bundled compact set.
pub fn bundled_root() -> PathBuf {
    repo_root().join("tests/oracles")
}

/// `locate`, refusing the bundled set when [`require_oracles`] is on.
fn located(var: &str, kind: &str) -> (PathBuf, bool) {
    let (dir, bundled) = locate(var, kind);
    if bundled && require_oracles() {
        panic!(
            "G4Q_REQUIRE_ORACLES=1 but neither {var} nor ../shared/{kind} is there: only the \
             bundled compact set ({}) was found",
            dir.display()
        );
    }
    (dir, bundled)
}

/// The fixtures folder: `G4Q_FIXTURES`, else `../shared/fixtures`, else the bundled set.
pub fn fixtures_dir() -> PathBuf {
    located("G4Q_FIXTURES", "fixtures").0
}

/// The golden quantization vectors: `G4Q_GOLDEN`, else `../shared/golden`, else the bundled set.
pub fn golden_dir() -> PathBuf {
    located("G4Q_GOLDEN", "golden").0
}

/// Whether [`fixtures_dir`] is the bundled compact set.
pub fn fixtures_bundled() -> bool {
    located("G4Q_FIXTURES", "fixtures").1
}

/// Whether [`golden_dir`] is the bundled compact set.
pub fn golden_bundled() -> bool {
    located("G4Q_GOLDEN", "golden").1
}

/// `G4Q_REQUIRE_ORACLES=1`: every oracle test must run (CI with the full set).
pub fn require_oracles() -> bool {
    std::env::var_os("G4Q_REQUIRE_ORACLES").is_some_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// For a test that cannot run its check: prints `SKIPPED: <test>: <missing>` and returns, so the
/// caller returns too. Panics (fails the test) instead when [`require_oracles`] is on.
pub fn skip(missing: impl Display) {
    let line = format!("SKIPPED: {}: {missing}", test_name());
    if require_oracles() {
        panic!("{line} (G4Q_REQUIRE_ORACLES=1: every oracle test must run)");
    }
    println!("{line}");
}

/// For an oracle that is not there: on the bundled compact set a [`skip`] (it leaves that oracle
/// out on purpose); on a full set a failure, because a missing oracle is not a pass.
pub fn skip_missing_oracle(missing: impl Display) {
    if fixtures_bundled() {
        skip(format!("{missing} (not in the bundled compact oracle set)"));
    } else {
        panic!(
            "missing oracle: {missing} (fixtures from {})",
            fixtures_dir().display()
        );
    }
}

/// `fixtures_dir()/rel` when it exists; otherwise [`skip_missing_oracle`] and `None`.
pub fn fixture(rel: &str) -> Option<PathBuf> {
    let path = fixtures_dir().join(rel);
    if path.exists() {
        Some(path)
    } else {
        skip_missing_oracle(path.display());
        None
    }
}

/// `fixtures_dir()/rel`; on the bundled set, which leaves `rel` out, `fixtures_dir()/standin`
/// instead: a fixture that serves the same check (says so on stdout).
pub fn fixture_or_standin(rel: &str, standin: &str) -> PathBuf {
    let root = fixtures_dir();
    if fixtures_bundled() && !root.join(rel).exists() {
        println!(
            "{}: {rel} is not in the bundled compact oracle set; using {standin}",
            test_name()
        );
        root.join(standin)
    } else {
        root.join(rel)
    }
}

/// The fixture folders that hold `marker` (a relative path such as `reference.safetensors` or
/// `llamacpp/manifest.json`), sorted. Panics, failing the test, when the fixtures folder cannot
/// be read; whether an empty list is acceptable is the caller's to assert.
pub fn fixture_dirs(marker: &str) -> Vec<PathBuf> {
    let root = fixtures_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("fixtures folder {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(marker).exists())
        .collect();
    dirs.sort();
    dirs
}

/// The fixture folders with transformers' outputs (`reference.safetensors`), sorted; panics when
/// there is none.
pub fn reference_fixtures() -> Vec<PathBuf> {
    let dirs = fixture_dirs("reference.safetensors");
    assert!(
        !dirs.is_empty(),
        "no fixture with reference.safetensors under {}",
        fixtures_dir().display()
    );
    dirs
}

/// The checkpoint folder llama.cpp converted to make the files of fixture `dir` (its manifest's
/// `converted_from`, less the note that the config was patched).
///
/// A fixture whose files llama.cpp made from a `causal-f32/` twin that the set does not ship
/// (the bundled set ships none; the full set's `trained-26b-a4b` was converted from its
/// text-only twin because llama.cpp's converter cannot read the released config's
/// `expert_intermediate_size: null`) is served by its `released-bf16/` files under the twin's
/// folder name: every weight is exactly representable in bf16, so both hold the same values,
/// and GGUF's `general.name` comes from the folder name. Only when neither is there: a
/// [`skip_missing_oracle`] and `None`.
pub fn llamacpp_source(dir: &Path, manifest: &serde_json::Value) -> Option<PathBuf> {
    let from = manifest["converted_from"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: manifest has no converted_from", dir.display()))
        .trim_end_matches(" (config patched)");
    let path = dir.join(from);
    if path.is_dir() {
        return Some(path);
    }
    let released = dir.join("released-bf16");
    if from == "causal-f32" && released.is_dir() {
        return Some(renamed_twin(&released, from));
    }
    skip_missing_oracle(format!(
        "{}, the checkpoint llama.cpp's files were made from",
        path.display()
    ));
    None
}

/// The fixture folder `dir`'s `llamacpp/manifest.json`: what llama.cpp's tools wrote there.
pub fn llamacpp_manifest(dir: &Path) -> serde_json::Value {
    let path = dir.join("llamacpp/manifest.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A GGUF file of a llama.cpp manifest that llama-quantize wrote.
pub struct QuantizedFile<'a> {
    /// The file name, `{mix}.gguf` or `{mix}.imatrix.gguf`.
    pub file: &'a str,
    /// The file type name (`Q4_K_M`).
    pub mix: &'a str,
    /// Whether llama-quantize was given the fixture's importance matrix.
    pub imatrix: bool,
    /// The manifest's entry for the file (its `gguf` dump, the command).
    pub entry: &'a serde_json::Value,
}

/// The files of `manifest` that llama-quantize wrote, in the manifest's order.
pub fn quantized_files(manifest: &serde_json::Value) -> Vec<QuantizedFile<'_>> {
    let files = manifest["files"]
        .as_object()
        .expect("manifest has no files");
    let mut out = Vec::new();
    for (file, entry) in files {
        let by_quantize = entry["command"][0]
            .as_str()
            .is_some_and(|c| c.ends_with("llama-quantize"));
        let Some(stem) = file.strip_suffix(".gguf").filter(|_| by_quantize) else {
            continue;
        };
        let (mix, imatrix) = match stem.strip_suffix(".imatrix") {
            Some(s) => (s, true),
            None => (stem, false),
        };
        out.push(QuantizedFile {
            file,
            mix,
            imatrix,
            entry,
        });
    }
    out
}

/// A folder named `name` (in a fresh temporary folder that lives as long as the test process)
/// whose files are links to the files of `src`.
fn renamed_twin(src: &Path, name: &str) -> PathBuf {
    let holder = tempfile::tempdir()
        .unwrap_or_else(|e| panic!("temporary folder: {e}"))
        .keep();
    let twin = holder.join(name);
    std::fs::create_dir(&twin).unwrap_or_else(|e| panic!("{}: {e}", twin.display()));
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let file = entry
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
            .path();
        let link = twin.join(file.file_name().expect("a folder entry has a name"));
        std::os::unix::fs::symlink(&file, &link)
            .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    }
    twin
}
