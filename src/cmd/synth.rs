//! `g4q synth` (being written).

/// Flags of `g4q synth`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("g4q synth is being written")
}
