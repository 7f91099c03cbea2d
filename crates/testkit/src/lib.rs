//! Test-only helpers shared by every crate's tests: where the oracles are. Tests read
//! `G4Q_FIXTURES` / `G4Q_GOLDEN` when set, else `../shared/fixtures` / `../shared/golden` beside
//! the repository, so another set of the same shape runs without code changes.

use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `crates/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn from_env_or(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(default),
    }
}

/// The fixtures folder: `G4Q_FIXTURES`, else `../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    from_env_or("G4Q_FIXTURES", "../shared/fixtures")
}

/// The golden quantization vectors: `G4Q_GOLDEN`, else `../shared/golden`.
pub fn golden_dir() -> PathBuf {
    from_env_or("G4Q_GOLDEN", "../shared/golden")
}

/// The fixture folders that hold `marker` (a relative path such as
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
