//! The compact oracle set bundled under `tests/oracles/` is exactly what `make-oracles` writes
//! from the full set at hand, file for file and byte for byte, and no file of it is large. Needs
//! the full set (`G4Q_FIXTURES` and `G4Q_GOLDEN`, or `../shared`); skipped without it.

use testkit::make_oracles::{make, MAX_SHARD_BYTES};
use testkit::oracles::{bundled_root, full_set};
use testkit::safetensors_file::files_under;

#[test]
fn bundled_set_is_what_make_oracles_writes() {
    let (Some(fixtures), Some(golden)) = (
        full_set("G4Q_FIXTURES", "fixtures"),
        full_set("G4Q_GOLDEN", "golden"),
    ) else {
        return testkit::skip("the full oracle set (../shared, or G4Q_FIXTURES and G4Q_GOLDEN)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let made = make(&fixtures, &golden, tmp.path());
    let bundled = bundled_root();
    let have: Vec<_> = files_under(&bundled)
        .into_iter()
        .filter(|p| p.starts_with("fixtures") || p.starts_with("golden"))
        .collect();
    assert_eq!(
        have, made,
        "tests/oracles differs from what scripts/make-oracles.sh makes: run it and commit"
    );
    let mut bytes = 0;
    for rel in &made {
        let (a, b) = (
            std::fs::read(bundled.join(rel)).unwrap(),
            std::fs::read(tmp.path().join(rel)).unwrap(),
        );
        assert!(
            a == b,
            "tests/oracles/{} is stale: run scripts/make-oracles.sh and commit",
            rel.display()
        );
        assert!(
            a.len() <= MAX_SHARD_BYTES + (1 << 20),
            "tests/oracles/{}: {} bytes",
            rel.display(),
            a.len()
        );
        bytes += a.len();
    }
    println!(
        "checked {} bundled files ({:.1} MB) against the full set",
        made.len(),
        bytes as f64 / 1e6
    );
}
