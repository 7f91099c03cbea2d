//! `g4q forward`: run the f32 reference forward pass on token ids or text and write the logits
//! (and optionally every layer's hidden states) as safetensors.

use std::path::PathBuf;

use convert::output::{check_target, Kind};
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
    #[arg(long, value_parser = super::threads::parse)]
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
        (None, None) => return Err(super::usage("give --tokens or --text")),
    };
    let pool = super::threads::pool(args.threads)?;

    let layers = ckpt.config().num_hidden_layers;
    let bar = super::progress::bar(layers as u64, "forward");
    let mut progress = |done: usize, _total: usize| bar.set_position(done as u64);
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
    bar.finish_and_clear();

    let logits = out
        .logits
        .as_slice()
        .ok_or_else(|| super::internal("logits are not contiguous"))?;
    let mut tensors = vec![OutTensor {
        name: "logits".into(),
        shape: vec![out.logits.nrows(), out.logits.ncols()],
        data: logits,
    }];
    for (i, h) in out.hidden_states.iter().flatten().enumerate() {
        tensors.push(OutTensor {
            name: format!("hidden.{i}"),
            shape: vec![h.nrows(), h.ncols()],
            data: h
                .as_slice()
                .ok_or_else(|| super::internal("hidden state is not contiguous"))?,
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
