//! The one way g4q writes an output, a file ([`OutputFile`]) or a folder ([`OutputDir`]).
//!
//! Data goes to a temporary entry beside the target, created exclusively under an unpredictable
//! name (so a link planted there is never followed), synced, and renamed over the target only
//! once complete. A failed run (bad input, full disk, `ulimit -f`) removes the temporary entry;
//! a run stopped by SIGTERM, SIGINT or SIGHUP removes it too ([`install_signal_cleanup`]); what a
//! SIGKILL leaves behind is removed by the next run that writes into the same folder, because
//! every temporary name carries [`TEMP_PREFIX`] and the writer's process id.
//!
//! Before anything is computed, a command checks its targets with [`check_target`]: an existing
//! target that is not a regular file (or folder, for folder outputs) is refused, and so is a
//! target that is, or is inside, one of the command's inputs.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::{ConvertError, Result};

/// Prefix of every temporary file and folder g4q creates: `.g4q-tmp-PID-RANDOM`.
pub const TEMP_PREFIX: &str = ".g4q-tmp-";

/// Random characters in a temporary name (62^10 possibilities).
const RANDOM_CHARS: usize = 10;

/// Temporary paths that exist right now, removed by the signal handler before it exits.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock leaves the list usable: it is only pushed to and removed from.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn unregister(path: &Path) {
    live().retain(|p| p != path);
}

/// What kind of output a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
}

/// Refuses `target` before any work is done: when it exists and is not a regular file (for
/// [`Kind::File`]) or a folder (for [`Kind::Folder`]), symbolic links included, and when it is,
/// or is inside, one of `inputs` (compared as canonical paths, and as the same file for hard
/// links).
pub fn check_target(target: &Path, kind: Kind, inputs: &[&Path]) -> Result<()> {
    check_kind(target, kind)?;
    let out = canonical_target(target)?;
    for input in inputs {
        let Ok(canon) = input.canonicalize() else {
            continue; // an input that does not exist is reported by whoever opens it
        };
        if out == canon || out.starts_with(&canon) || same_file(target, input) {
            let how = if out == canon || same_file(target, input) {
                "is"
            } else {
                "is inside"
            };
            return Err(ConvertError::format(
                target,
                format!(
                    "refusing to write an output that {how} the input {}",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

fn check_kind(target: &Path, kind: Kind) -> Result<()> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConvertError::io(target, e)),
    };
    let ft = meta.file_type();
    let ok = match kind {
        Kind::File => ft.is_file(),
        Kind::Folder => ft.is_dir(),
    };
    if ok {
        return Ok(());
    }
    let what = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_file() {
        "a file"
    } else {
        "a device, FIFO or socket"
    };
    let want = match kind {
        Kind::File => "a regular file",
        Kind::Folder => "a folder",
    };
    Err(ConvertError::format(
        target,
        format!("refusing to replace it: it exists and is {what}, not {want}"),
    ))
}

/// The canonical form of a target that may not exist yet: its nearest existing ancestor made
/// canonical, with the rest of the path appended.
fn canonical_target(target: &Path) -> Result<PathBuf> {
    let mut rest = Vec::new();
    let mut cur = target;
    loop {
        if let Ok(c) = cur.canonicalize() {
            return Ok(rest.iter().rev().fold(c, |p, n: &&OsStr| p.join(n)));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                cur = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => {
                return Err(ConvertError::format(
                    target,
                    "output path has no existing folder above it",
                ))
            }
        }
    }
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// The folder a target is written in.
fn parent_of(target: &Path) -> Result<&Path> {
    target.file_name().ok_or_else(|| {
        ConvertError::format(target, "output path does not end in a file or folder name")
    })?;
    Ok(match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    })
}

fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// Runs `create` with a `tempfile` builder set up for our names and the usual modes, and
/// registers the new entry (at `path_of` it) for the signal handler, under one lock so the
/// handler never misses one. The `tempfile` crate creates exclusively (`O_EXCL`: never through a
/// planted link) under a random name, retrying on a collision.
fn registered<T>(
    kind: Kind,
    create: impl FnOnce(&tempfile::Builder) -> std::io::Result<T>,
    path_of: impl FnOnce(&T) -> &Path,
) -> std::io::Result<T> {
    let mut live = live();
    let prefix = temp_prefix();
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).rand_bytes(RANDOM_CHARS);
    #[cfg(unix)]
    builder.permissions(permissions(kind));
    #[cfg(not(unix))]
    let _ = kind;
    let made = create(&builder)?;
    live.push(path_of(&made).to_path_buf());
    Ok(made)
}

/// The first steps of every output: refuse a target of the wrong kind, and remove the stale
/// temporary entries of dead runs from the folder it is written in, which is returned.
fn prepare(target: &Path, kind: Kind) -> Result<&Path> {
    check_kind(target, kind)?;
    let dir = parent_of(target)?;
    remove_stale(dir);
    Ok(dir)
}

/// Mode of new files and folders before the umask, as `File::create` and `create_dir` use (the
/// `tempfile` crate would otherwise make them private to their owner).
#[cfg(unix)]
fn permissions(kind: Kind) -> Permissions {
    use std::os::unix::fs::PermissionsExt;
    Permissions::from_mode(match kind {
        Kind::File => 0o666,
        Kind::Folder => 0o777,
    })
}

/// Adds a clear cause to an `EFBIG` write failure: the process hit its file size limit.
fn explain(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(EFBIG) {
        std::io::Error::new(
            e.kind(),
            format!("file size limit exceeded (ulimit -f): {e}"),
        )
    } else {
        e
    }
}

/// `EFBIG`, "File too large", the same number on Linux and macOS.
const EFBIG: i32 = 27;

/// A file being written: a temporary file beside `target` that becomes `target` on
/// [`OutputFile::commit`], and disappears if dropped before.
pub struct OutputFile {
    target: PathBuf,
    temp: Option<tempfile::NamedTempFile>,
}

impl OutputFile {
    /// Starts `target`: refuses a target that is not a regular file, removes stale temporary
    /// entries of dead g4q processes from its folder and creates the temporary file.
    pub fn create(target: &Path) -> Result<OutputFile> {
        let dir = prepare(target, Kind::File)?;
        let temp = registered(Kind::File, |b| b.tempfile_in(dir), |t| t.path())
            .map_err(|e| ConvertError::io(target, e))?;
        Ok(OutputFile {
            target: target.to_path_buf(),
            temp: Some(temp),
        })
    }

    /// The target this file becomes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn file(&mut self) -> &mut File {
        self.temp
            .as_mut()
            .expect("present until commit")
            .as_file_mut()
    }

    /// Syncs the file, renames it over the target and syncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("present until commit");
        let path = temp.path().to_path_buf();
        let result = (|| {
            temp.as_file().sync_all()?;
            temp.persist(&self.target).map_err(|e| e.error)?;
            sync_dir(parent_of(&self.target).map_err(std::io::Error::other)?);
            Ok(())
        })();
        // A failed persist dropped the temporary file, which removed it.
        unregister(&path);
        result.map_err(|e| ConvertError::io(&self.target, explain(e)))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf).map_err(explain)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file().write_all(buf).map_err(explain)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush().map_err(explain)
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            drop(temp); // removes the file
            unregister(&path);
        }
    }
}

/// Writes `bytes` to `target` through an [`OutputFile`].
pub fn write_file(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = OutputFile::create(target)?;
    out.write_all(bytes)
        .map_err(|e| ConvertError::io(target, e))?;
    out.commit()
}

/// Fsyncs a folder so a rename inside it is durable; best effort (some systems refuse it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes the folder `target` through an [`OutputDir`]: `fill` writes into the temporary
/// folder, which then moves into place; its errors name files under `target`.
pub fn write_dir<T>(target: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let out = OutputDir::create(target)?;
    let value = fill(out.path()).map_err(|e| out.retarget(e))?;
    out.commit()?;
    Ok(value)
}

/// A folder being written: a temporary folder beside `target`, filled through
/// [`OutputDir::path`], that becomes `target` on [`OutputDir::commit`] and disappears with its
/// contents if dropped before.
///
/// A target that does not exist is created by one rename. Into an existing folder each file is
/// renamed in turn, replacing files of the same name and leaving every other entry alone.
pub struct OutputDir {
    target: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl OutputDir {
    /// Starts `target`: refuses a target that is not a folder, removes stale temporary entries
    /// of dead g4q processes from its parent and creates the temporary folder.
    pub fn create(target: &Path) -> Result<OutputDir> {
        let parent = prepare(target, Kind::Folder)?;
        let temp = registered(Kind::Folder, |b| b.tempdir_in(parent), |t| t.path())
            .map_err(|e| ConvertError::io(target, e))?;
        Ok(OutputDir {
            target: target.to_path_buf(),
            temp: Some(temp),
        })
    }

    /// The temporary folder to write into.
    pub fn path(&self) -> &Path {
        self.temp.as_ref().expect("present until commit").path()
    }

    /// The folder this becomes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// `e` with a path inside the temporary folder replaced by the same path under the target,
    /// so an error names the file the user asked for.
    pub fn retarget(&self, e: ConvertError) -> ConvertError {
        let map = |file: PathBuf| match file.strip_prefix(self.path()) {
            Ok(rest) => self.target.join(rest),
            Err(_) => file,
        };
        match e {
            ConvertError::Format { file, message } => ConvertError::Format {
                file: map(file),
                message,
            },
            ConvertError::Tensor {
                file,
                tensor,
                message,
            } => ConvertError::Tensor {
                file: map(file),
                tensor,
                message,
            },
            ConvertError::Io { file, source } => ConvertError::Io {
                file: map(file),
                source,
            },
            other => other,
        }
    }

    /// Syncs every file written and moves the folder, or its files, into place.
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("present until commit");
        let io = |e| ConvertError::io(&self.target, explain(e));
        let mut names = Vec::new();
        for entry in std::fs::read_dir(temp.path()).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_type().map_err(io)?.is_file() {
                File::open(entry.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
            }
            names.push(entry.file_name());
        }
        sync_dir(temp.path());
        let result = if std::fs::symlink_metadata(&self.target).is_err() {
            std::fs::rename(temp.path(), &self.target).map_err(io)
        } else {
            self.merge_into_target(temp.path(), &names)
        };
        if result.is_ok() {
            sync_dir(parent_of(&self.target)?);
        }
        let path = temp.path().to_path_buf();
        drop(temp); // removes what is left (everything, after a failure)
        unregister(&path);
        result
    }

    /// Moves `names` from `temp` into the existing target folder, after checking that none
    /// would replace anything but a regular file.
    fn merge_into_target(&self, temp: &Path, names: &[std::ffi::OsString]) -> Result<()> {
        check_kind(&self.target, Kind::Folder)?;
        for name in names {
            check_kind(&self.target.join(name), Kind::File)?;
        }
        for name in names {
            let dst = self.target.join(name);
            std::fs::rename(temp.join(name), &dst).map_err(|e| ConvertError::io(&dst, e))?;
        }
        sync_dir(&self.target);
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            drop(temp);
            unregister(&path);
        }
    }
}

/// A scratch folder beside `target` (named like every temporary entry, so signals and later runs
/// clean it up), removed with its contents when dropped: intermediate files that are no output.
pub struct ScratchDir(tempfile::TempDir);

impl ScratchDir {
    /// Creates a scratch folder in the folder `target` would be written in.
    pub fn beside(target: &Path) -> Result<ScratchDir> {
        let parent = parent_of(target)?;
        remove_stale(parent);
        let dir = registered(Kind::Folder, |b| b.tempdir_in(parent), |t| t.path())
            .map_err(|e| ConvertError::io(parent, e))?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let path = self.0.path().to_path_buf();
        // Removes the folder before unregistering it; `TempDir`'s own drop then finds nothing.
        let _ = std::fs::remove_dir_all(&path);
        unregister(&path);
    }
}

/// The process id in a temporary name of ours (`.g4q-tmp-PID-RANDOM`).
fn temp_owner(name: &OsStr) -> Option<u32> {
    let rest = name.to_str()?.strip_prefix(TEMP_PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    if random.len() != RANDOM_CHARS || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists (a process of another user counts as existing).
#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(not(unix))]
fn process_exists(_: u32) -> bool {
    true
}

/// Removes the temporary files and folders of g4q processes that no longer run from `dir`: what
/// a SIGKILL or a power cut left behind. Best effort: an entry that cannot be removed stays.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = temp_owner(&entry.file_name()) else {
            continue;
        };
        if pid == me || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }
}

/// Removes every live temporary entry of this process. The signal handler calls it; it keeps the
/// list locked, so no new temporary entry can be created until the process exits.
fn remove_live() -> MutexGuard<'static, Vec<PathBuf>> {
    let live = live();
    for path in live.iter() {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                // A writer still filling the folder can add an entry while it is removed.
                for _ in 0..3 {
                    if std::fs::remove_dir_all(path).is_ok() {
                        break;
                    }
                }
            }
            Ok(_) => {
                let _ = std::fs::remove_file(path);
            }
            Err(_) => {}
        }
    }
    live
}

/// Installs the handlers that make interruptions clean: on SIGTERM, SIGINT or SIGHUP every
/// temporary file and folder of this process is removed and the process exits with
/// 128 + the signal number; SIGXFSZ is caught and ignored, so writing past `ulimit -f` fails
/// with an error ("file size limit exceeded") instead of killing the process silently.
#[cfg(unix)]
pub fn install_signal_cleanup() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGXFSZ])?;
    std::thread::Builder::new()
        .name("g4q-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGXFSZ {
                    continue; // the write that crossed the limit returns EFBIG
                }
                let _held = remove_live();
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

#[cfg(not(unix))]
pub fn install_signal_cleanup() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_appears_only_on_commit_and_nothing_else_remains() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut out = OutputFile::create(&target).unwrap();
        out.write_all(b"hello").unwrap();
        let temps = names(dir.path());
        assert_eq!(temps.len(), 1);
        assert!(temps[0].starts_with(&temp_prefix()), "{temps:?}");
        assert_eq!(temp_owner(OsStr::new(&temps[0])), Some(std::process::id()));
        assert!(!target.exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert_eq!(names(dir.path()), ["out.bin"]);
        assert!(!live().iter().any(|p| p.starts_with(dir.path())));

        // Dropped before commit: the old target stays, the temporary file goes.
        let mut out = OutputFile::create(&target).unwrap();
        out.write_all(b"partial").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert_eq!(names(dir.path()), ["out.bin"]);
        println!("checked 2 file outputs");
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_usual_mode_not_a_private_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.bin");
        write_file(&target, b"x").unwrap();
        let plain = dir.path().join("plain.bin");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), mode(&plain));
        println!("checked 1 mode: {:o}", mode(&target));
    }

    #[cfg(unix)]
    #[test]
    fn targets_that_are_not_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link.gguf");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let mut checked = 0;
        for (target, kind) in [
            (link.as_path(), Kind::File),
            (sub.as_path(), Kind::File),
            (Path::new("/dev/null"), Kind::File),
            (victim.as_path(), Kind::Folder),
            (link.as_path(), Kind::Folder),
        ] {
            let err = check_target(target, kind, &[]).unwrap_err().to_string();
            assert!(err.contains("refusing to replace"), "{err}");
            checked += 1;
        }
        assert!(OutputFile::create(&link).is_err());
        assert!(OutputDir::create(&victim).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        println!("checked {checked} refused targets");
    }

    #[test]
    fn outputs_that_are_or_are_inside_an_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), b"{}").unwrap();
        let dotted = model.join("..").join("model").join("config.json");
        let mut checked = 0;
        for target in [
            model.join("config.json"),
            dotted,
            model.join("out.gguf"),
            model.join("new/out.gguf"),
            model.clone(),
        ] {
            let kind = if target == model {
                Kind::Folder
            } else {
                Kind::File
            };
            let err = check_target(&target, kind, &[&model])
                .unwrap_err()
                .to_string();
            assert!(err.contains("refusing to write an output"), "{err}");
            checked += 1;
        }
        check_target(&dir.path().join("out.gguf"), Kind::File, &[&model]).unwrap();
        println!("checked {checked} overlapping outputs");
    }

    #[cfg(unix)]
    #[test]
    fn a_hard_link_to_an_input_is_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.gguf");
        std::fs::write(&input, b"x").unwrap();
        let alias = dir.path().join("alias.gguf");
        std::fs::hard_link(&input, &alias).unwrap();
        assert!(check_target(&alias, Kind::File, &[&input]).is_err());
        println!("checked 1 hard link");
    }

    #[test]
    fn folders_appear_whole_or_merge_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("release");
        let out = OutputDir::create(&target).unwrap();
        std::fs::write(out.path().join("a"), b"1").unwrap();
        assert!(!target.exists());
        out.commit().unwrap();
        assert_eq!(names(&target), ["a"]);
        assert_eq!(names(dir.path()), ["release"]);

        // Into an existing folder: `a` replaced, `keep` untouched.
        std::fs::write(target.join("keep"), b"k").unwrap();
        let out = OutputDir::create(&target).unwrap();
        std::fs::write(out.path().join("a"), b"2").unwrap();
        std::fs::write(out.path().join("b"), b"3").unwrap();
        out.commit().unwrap();
        assert_eq!(names(&target), ["a", "b", "keep"]);
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"2");
        assert_eq!(names(dir.path()), ["release"]);

        // Dropped: nothing of it remains, not even an empty folder.
        let fresh = dir.path().join("fresh");
        let out = OutputDir::create(&fresh).unwrap();
        std::fs::write(out.path().join("a"), b"1").unwrap();
        drop(out);
        assert_eq!(names(dir.path()), ["release"]);
        println!("checked 3 folder outputs");
    }

    #[test]
    fn stale_entries_of_dead_processes_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale_file = format!("{TEMP_PREFIX}{dead}-abcdeABCDE");
        let stale_dir = format!("{TEMP_PREFIX}{dead}-0123456789");
        let mine = format!("{TEMP_PREFIX}{}-abcdeABCDE", std::process::id());
        let not_ours = format!("{TEMP_PREFIX}{dead}-short");
        std::fs::write(dir.path().join(&stale_file), b"x").unwrap();
        std::fs::create_dir(dir.path().join(&stale_dir)).unwrap();
        std::fs::write(dir.path().join(&stale_dir).join("f"), b"x").unwrap();
        std::fs::write(dir.path().join(&mine), b"x").unwrap();
        std::fs::write(dir.path().join(&not_ours), b"x").unwrap();
        remove_stale(dir.path());
        let mut want = vec![mine, not_ours];
        want.sort();
        assert_eq!(names(dir.path()), want);
        println!("checked 4 entries");
    }
}
