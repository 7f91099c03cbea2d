//! Test-only helpers shared by every crate's tests and benches, each in one place: where the
//! oracles are and what a test does when one is missing ([`oracles`]), running the `g4q` binary
//! ([`g4q!`]), the deterministic pseudo-random generator ([`XorShift32`]), copying and rewriting
//! safetensors checkpoints to corrupt them ([`safetensors_file`]), and reading transformers'
//! `reference.safetensors` ([`reference`]).
//!
//! The oracles come from `G4Q_FIXTURES` / `G4Q_GOLDEN` when set, else from `../shared` beside the
//! repository (the full set), else from the compact set bundled in `tests/oracles` (see its
//! README), so the test command passes on a fresh clone with nothing beside it. A check that only
//! the full set can feed prints `SKIPPED: <test>: <what is missing>`; with
//! `G4Q_REQUIRE_ORACLES=1` (set by `.ci/run` when the full set is there) every skip fails.

pub mod fuzz;
pub mod gguf_oracle;
pub mod imatrix_counts;
pub mod make_oracles;
pub mod oracles;
pub mod python;
pub mod reference;
pub mod safetensors_file;

mod cli;
mod rng;

pub use cli::{expect_success, path_str, run_g4q};
pub use imatrix_counts::assert_counts_close;
pub use oracles::{
    fixture, fixture_dirs, fixture_or_standin, fixtures_bundled, fixtures_dir, golden_bundled,
    golden_dir, llamacpp_manifest, llamacpp_source, quantized_files, reference_fixtures, repo_root,
    require_oracles, skip, skip_missing_oracle, QuantizedFile,
};
pub use python::venv_python;
pub use rng::XorShift32;
pub use safetensors_file::{copy_checkpoint, copy_checkpoint_to};
