//! Criterion benches for g4q; see `benches/` and README.md.
