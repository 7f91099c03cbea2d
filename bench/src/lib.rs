//! `bench`: what g4q's formats cost on the machine they run on. The host fingerprint
//! ([`host`]), its measured limits ([`limits`]) and the products `g4q bench` times, plus the
//! Criterion benches in `benches/` (see README.md).

pub mod host;
pub mod limits;
