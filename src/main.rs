//! The `g4q` command line: Gemma 4 checkpoints to verified, quantized releases.
//!
//! Each subcommand lives in `cmd/`; this file parses flags and maps failures to the documented
//! exit codes (0 ok, 1 gate failed, 2 usage or input error, 3 internal error; 128 + N after
//! signal N, see `convert::output::install_signal_cleanup`).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Gemma 4 checkpoints to verified, quantized releases.
#[derive(Parser)]
#[command(name = "g4q", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a checkpoint: variant, parameter counts, layer plan, tensors, memory estimate.
    Inspect(cmd::inspect::Args),
    /// Run the f32 reference forward pass and write the logits as safetensors.
    Forward(cmd::forward::Args),
    /// Write a random checkpoint with a variant's real names and widths but only N layers.
    Synth(cmd::synth::Args),
    /// Convert a checkpoint folder to a release (GGUF: any llama.cpp mix) in one streaming pass.
    Convert(cmd::convert::Args),
    /// Re-quantize an existing GGUF file (F32, F16, BF16 or Q8_0 tensors) to another mix.
    Quantize(cmd::quantize::Args),
    /// Check a GGUF or safetensors candidate against the reference: PPL, KLD, top-1, CI gates.
    Verify(cmd::verify::Args),
    /// Compute an importance matrix (llama.cpp's GGUF imatrix) from calibration text.
    Imatrix(cmd::imatrix::Args),
    /// A whole verified release: every GGUF type (and AWQ/ONNX), reports, model card, checksums.
    Release(cmd::release::Args),
    /// Time every format's decode and prefill products here, against the measured bandwidth.
    Bench(cmd::bench::Args),
    /// Recommend the quantization to ship to each device from measured accuracy, size and speed.
    Recommend(cmd::recommend::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Err(e) = convert::output::install_signal_cleanup() {
        eprintln!("g4q: warning: no cleanup on interruption: {e}");
    }
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Forward(args) => cmd::forward::run(args),
        Command::Synth(args) => cmd::synth::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
        Command::Imatrix(args) => cmd::imatrix::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Release(args) => cmd::release::run(args),
        Command::Recommend(args) => cmd::recommend::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("g4q: error: {}", cmd::one_line(&err));
            ExitCode::from(cmd::exit_code(&err))
        }
    }
}

/// Prints a flag error as the one `g4q: error:` line every other input error is (clap's own text
/// spans several lines, with usage and a hint), exit code 2; `--help` and `--version` print as
/// clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("g4q: error: {message} (see g4q --help)");
    ExitCode::from(2)
}
