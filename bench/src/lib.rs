//! `bench`: what g4q's formats cost on the machine they run on. The host fingerprint
//! ([`host`]), its measured limits ([`limits`]), the products `g4q bench` times ([`formats`],
//! [`awq`]), plus the Criterion benches in `benches/` (see README.md).

pub mod awq;
pub mod devices;
pub mod estimate;
pub mod formats;
pub mod host;
pub mod limits;
pub mod recommend;
pub mod report;
