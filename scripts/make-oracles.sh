#!/usr/bin/env bash
# Writes the compact oracle set bundled under tests/oracles/ (fixtures/ and golden/) from the
# full set: G4Q_FIXTURES / G4Q_GOLDEN when set, else ../shared/fixtures and ../shared/golden.
# Deterministic: the same full set gives the same bytes. What it keeps is in
# tests/oracles/README.md; the test `bundled_oracles` (crates/testkit) fails when the bundled set
# is not what this script makes from the full set at hand. Commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p testkit --bin make-oracles
