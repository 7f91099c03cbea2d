//! Throwaway Python virtualenvs for the tests that check our files with the peer tools' own
//! Python packages (gguf, onnxruntime, onnxruntime-genai), installed from PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One venv is made at a time in a test process: two tests of one binary that both find no venv
/// would otherwise build it over each other and one of them would see a half-installed one.
static MAKING: Mutex<()> = Mutex::new(());

/// The python of the virtualenv `venv` (made once, reused while `import` succeeds in it) with
/// `packages` installed by pip; `None` when python3's venv or pip cannot provide them.
pub fn venv_python(venv: &Path, packages: &[&str], import: &str) -> Option<PathBuf> {
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let py = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", &format!("import {import}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if py.exists() && ok(&py) {
        return Some(py);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    (installed && ok(&py)).then_some(py)
}
