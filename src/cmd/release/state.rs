//! The records that make a release resumable: after each output is written, a small state file
//! (`.g4q-state/NAME.json`) with the sha256 of the inputs that made it (tool version, checkpoint
//! fingerprint, the options that shape its bytes) and of the output itself; after each report,
//! `.g4q-state/NAME.verify.json` with the inputs of the verification.
//!
//! A record is removed before its output is rewritten and written (atomically) only after the
//! output is complete, so a record always describes the bytes beside it: a run killed between
//! the two leaves an output without a record, which the next run makes again.

use std::path::{Path, PathBuf};

use anyhow::Context;
use convert::output::write_file;
use serde::{Deserialize, Serialize};
use verify::candidate::{fingerprint, fingerprint_with_members, sha256_bytes};

use super::recipe::FileHash;

/// Folder of the state records inside a release (not part of what is published).
pub const STATE_DIR: &str = ".g4q-state";
/// Folder of the per-file verification reports.
pub const REPORTS_DIR: &str = "reports";

/// A finished output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Built {
    pub name: String,
    /// `imatrix`, `gguf`, `awq`, `onnx`, `mmproj`.
    pub kind: String,
    /// sha256 of what made it ([`key`] of the build inputs).
    pub inputs: String,
    /// sha256 of the file; of a folder, the fingerprint `g4q verify` records for it.
    pub sha256: String,
    /// Size in bytes (a folder: all its files).
    pub bytes: u64,
    /// A folder's files, by name.
    pub members: Vec<FileHash>,
    /// Tensor bytes × 8 / text-model weights (GGUF: from the plan; folders: their weight
    /// files; the projector: its own tower weights); absent for the imatrix.
    pub bits_per_weight: Option<f64>,
}

/// A finished verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub name: String,
    /// sha256 of the verification inputs: reference, this output's sha256, evaluation data and
    /// options, gates, tool version.
    pub inputs: String,
}

/// sha256 of a JSON value's compact text (`preserve_order`: the order the value was built in).
pub fn key(value: &serde_json::Value) -> String {
    sha256_bytes(value.to_string().as_bytes())
}

fn state_path(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(STATE_DIR).join(format!("{name}{suffix}"))
}

/// The report of output `name` in release folder `dir`.
pub fn report_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(REPORTS_DIR).join(format!("{name}.json"))
}

/// Creates the state and reports folders of `dir`.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    for sub in [STATE_DIR, REPORTS_DIR] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising a state record")? + "\n";
    write_file(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The record of output `name`, if there is a readable one.
pub fn read_built(dir: &Path, name: &str) -> Option<Built> {
    read_json(&state_path(dir, name, ".json"))
}

/// The record of output `name` when it was made from `inputs` and the output beside it still
/// has its recorded size (each file of a folder).
pub fn current_built(dir: &Path, name: &str, inputs: &str) -> Option<Built> {
    let b = read_built(dir, name)?;
    let target = dir.join(name);
    let size = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    };
    let intact = if b.members.is_empty() {
        size(&target) == Some(b.bytes)
    } else {
        b.members
            .iter()
            .all(|m| size(&target.join(&m.name)) == Some(m.bytes))
    };
    (b.inputs == inputs && intact).then_some(b)
}

/// The verification record of output `name`, if there is a readable one.
pub fn read_verified(dir: &Path, name: &str) -> Option<Verified> {
    read_json(&state_path(dir, name, ".verify.json"))
}

/// Removes both records of output `name` (before it, or its report, is rewritten).
pub fn forget(dir: &Path, name: &str) -> anyhow::Result<()> {
    for suffix in [".json", ".verify.json"] {
        let p = state_path(dir, name, suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

/// Removes the verification record of output `name` (before its report is rewritten).
pub fn forget_verified(dir: &Path, name: &str) -> anyhow::Result<()> {
    let p = state_path(dir, name, ".verify.json");
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

pub fn write_built(dir: &Path, b: &Built) -> anyhow::Result<()> {
    write_json(&state_path(dir, &b.name, ".json"), b)
}

pub fn write_verified(dir: &Path, v: &Verified) -> anyhow::Result<()> {
    write_json(&state_path(dir, &v.name, ".verify.json"), v)
}

/// sha256 (the fingerprint for a folder), total bytes and, for a folder, each file's hash.
pub fn describe(target: &Path) -> anyhow::Result<(String, u64, Vec<FileHash>)> {
    if !target.is_dir() {
        let sha256 = fingerprint(target)?;
        let bytes = std::fs::metadata(target)
            .with_context(|| format!("reading {}", target.display()))?
            .len();
        return Ok((sha256, bytes, Vec::new()));
    }
    let (sha256, members) = fingerprint_with_members(target, |_| true)?;
    let members: Vec<FileHash> = members.into_iter().map(FileHash::from).collect();
    let bytes = members.iter().map(|m| m.bytes).sum();
    Ok((sha256, bytes, members))
}
