//! Writes the compact oracle set under `tests/oracles/` from the full set (`G4Q_FIXTURES` /
//! `G4Q_GOLDEN`, else `../shared`). Run through `scripts/make-oracles.sh`.

use testkit::make_oracles::{make, MAX_SHARD_BYTES};
use testkit::oracles::{bundled_root, full_set};

fn main() {
    let (Some(fixtures), Some(golden)) = (
        full_set("G4Q_FIXTURES", "fixtures"),
        full_set("G4Q_GOLDEN", "golden"),
    ) else {
        eprintln!("make-oracles: error: no full oracle set (set G4Q_FIXTURES and G4Q_GOLDEN, or put it in ../shared)");
        std::process::exit(2);
    };
    let out = bundled_root();
    let files = make(&fixtures, &golden, &out);
    let mut total = 0;
    for f in &files {
        let size = std::fs::metadata(out.join(f)).unwrap().len();
        assert!(
            size <= MAX_SHARD_BYTES as u64 + (1 << 20),
            "{}: {size} bytes",
            f.display()
        );
        total += size;
    }
    println!(
        "make-oracles: {} files, {:.1} MB under {} (from {} and {})",
        files.len(),
        total as f64 / 1e6,
        out.display(),
        fixtures.display(),
        golden.display()
    );
}
