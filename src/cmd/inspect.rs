//! `g4q inspect` (being written).

/// Flags of `g4q inspect`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("g4q inspect is being written")
}
