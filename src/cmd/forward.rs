//! `g4q forward` (being written).

/// Flags of `g4q forward`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("g4q forward is being written")
}
