//! Running the `g4q` binary from an integration test of the `g4q` package.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// `g4q!()` is a [`Command`] for the `g4q` binary that cargo built for the calling test;
/// `g4q!(args)` runs it with `args` and returns its [`Output`]. A macro because only the calling
/// crate knows the binary's path (`CARGO_BIN_EXE_g4q`).
#[macro_export]
macro_rules! g4q {
    () => {
        ::std::process::Command::new(env!("CARGO_BIN_EXE_g4q"))
    };
    ($args:expr) => {
        $crate::run_g4q(env!("CARGO_BIN_EXE_g4q"), $args)
    };
}

/// `g4q_ok!(args)` runs the calling test's `g4q` binary with `args` and fails the test, showing
/// stderr, unless it exits 0; returns its [`Output`].
#[macro_export]
macro_rules! g4q_ok {
    ($args:expr) => {
        $crate::expect_success($crate::run_g4q(env!("CARGO_BIN_EXE_g4q"), $args), $args)
    };
}

/// `out` when its process exited 0; otherwise fails the test naming `args` and showing stderr.
pub fn expect_success<A: std::fmt::Debug + ?Sized>(out: Output, args: &A) -> Output {
    assert!(
        out.status.success(),
        "g4q {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the binary `bin` with `args`; panics (failing the test) only when it cannot start.
pub fn run_g4q<I, S>(bin: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} did not start: {e}"))
}

/// A path as a `&str` argument (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
}
