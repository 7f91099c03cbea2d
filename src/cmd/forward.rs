//! `g4q forward`: run the f32 reference forward pass on token ids or text and write the logits
//! (and optionally every layer's hidden states) as safetensors.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use convert::output::{check_target, Kind};
use indicatif::{ProgressBar, ProgressStyle};
use verify::output::{write_safetensors, OutTensor};
use verify::{forward_streaming, ForwardOptions, Model, NoObserver, Tokenizer};

/// Flags of `g4q forward`.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder (config.json, safetensors, tokenizer.json).
    pub model: PathBuf,
    /// Comma-separated token ids, used as given (include BOS = 2 yourself).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "text",
        conflicts_with = "text"
    )]
    pub tokens: Option<Vec<u32>>,
    /// Raw text, tokenized with the model's tokenizer.json; BOS is prepended.
    #[arg(long)]
    pub text: Option<String>,
    /// Output safetensors file: `logits` [T, vocab] f32 (after the softcap).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write `hidden.N` [T, hidden]: N = 0 the scaled embedding, N = i + 1 layer i's output.
    #[arg(long)]
    pub hidden_states: bool,
    /// Hold one layer's weights at a time (memory = one layer + activations); same output bytes.
    #[arg(long)]
    pub stream: bool,
    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_target(&args.out, Kind::File, &[&args.model])?;
    // A checkpoint folder, an AWQ int4 release folder or a GGUF file (dequantized weights).
    let opened =
        verify::candidate::Opened::open(&args.model, verify::gguf_weights::GgufMath::Dequantize)?;
    let ckpt = opened.weights();
    let ids = match (&args.tokens, &args.text) {
        (Some(t), _) => t.clone(),
        (None, Some(text)) => {
            let tok = Tokenizer::from_model_dir(&args.model)?;
            tok.encode_with_bos(text, ckpt.config().bos_token_id)?
        }
        (None, None) => anyhow::bail!("give --tokens or --text"),
    };
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(verify::VerifyError::Input("--threads must be at least 1".into()).into());
        }
        builder = builder.num_threads(n);
    }
    let pool = builder.build().context("starting worker threads")?;

    let layers = ckpt.config().num_hidden_layers;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(layers as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} layers") {
            bar.set_style(style);
        }
        bar.set_message(format!("forward, {} tokens", ids.len()));
        Some(bar)
    } else {
        None
    };
    let mut progress = |done: usize, _total: usize| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    };
    let opts = ForwardOptions {
        hidden_states: args.hidden_states,
    };
    let start = std::time::Instant::now();
    let out = pool.install(|| -> verify::Result<_> {
        if args.stream {
            forward_streaming(ckpt, &ids, opts, &mut NoObserver, &mut progress)
        } else {
            Model::load(ckpt)?.forward(&ids, opts, &mut NoObserver, &mut progress)
        }
    })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let logits = out.logits.as_slice().context("logits are not contiguous")?;
    let mut tensors = vec![OutTensor {
        name: "logits".into(),
        shape: vec![out.logits.nrows(), out.logits.ncols()],
        data: logits,
    }];
    for (i, h) in out.hidden_states.iter().flatten().enumerate() {
        tensors.push(OutTensor {
            name: format!("hidden.{i}"),
            shape: vec![h.nrows(), h.ncols()],
            data: h.as_slice().context("hidden state is not contiguous")?,
        });
    }
    write_safetensors(&args.out, &tensors)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "logits [{}, {}] -> {} ({} mode, {:.2} s, {:.1} tokens/s)",
        out.logits.nrows(),
        out.logits.ncols(),
        args.out.display(),
        if args.stream {
            "streaming"
        } else {
            "in-memory"
        },
        secs,
        ids.len() as f64 / secs
    );
    Ok(())
}
