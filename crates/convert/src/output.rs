//! Atomic output files: data goes to a temporary file beside the target, which is renamed over
//! the target only once everything was written and synced. Dropping a [`TempOutput`] that was
//! not committed deletes the temporary file, so a failed run (bad input, disk full) never leaves
//! a partial output behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{ConvertError, Result};

/// A temporary file that becomes `target` on [`TempOutput::commit`].
pub struct TempOutput {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl TempOutput {
    /// Plans a temporary file for `target` in the same directory (so the rename is atomic).
    pub fn new(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| ConvertError::format(target, "output path has no file name"))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{}", std::process::id()));
        let temp = target.with_file_name(temp_name);
        Ok(TempOutput {
            target: target.to_path_buf(),
            temp,
            committed: false,
        })
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Creates (truncates) the temporary file.
    pub fn create(&self) -> Result<File> {
        File::create(&self.temp).map_err(|e| ConvertError::io(&self.target, e))
    }

    /// Syncs `file` (the temporary file, fully written) and renames it to the target.
    pub fn commit(mut self, file: File) -> Result<()> {
        file.sync_all()
            .map_err(|e| ConvertError::io(&self.target, e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(|e| ConvertError::io(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
