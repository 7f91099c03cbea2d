#!/usr/bin/env bash
# g4q against llama.cpp's own tools on the same work (issue 16 item 5; table in bench/README.md):
#   convert  g4q convert --type Q4_K_M   vs  convert_hf_to_gguf.py --outtype bf16 + llama-quantize Q4_K_M
#   imatrix  g4q imatrix                 vs  llama-imatrix on the bf16 GGUF
#   verify   g4q verify of the Q4_K_M    vs  llama-perplexity --kl-divergence-base on the bf16 GGUF
#                                            + llama-perplexity --kl-divergence on the Q4_K_M
# on `g4q synth --variant e2b --layers 4` (262k vocabulary, real widths), all at the same threads,
# context and chunks. Prints one markdown row per step and run (wall seconds, peak RSS) and
# whether the two Q4_K_M files are byte-identical.
#
# Needs (set up once; the script does it when they are missing):
#   LLAMA_SRC  llama.cpp sources (convert_hf_to_gguf.py, gguf-py): the llama.cpp vendored in
#              the llama-cpp-python 0.3.36 sdist from PyPI;
#   LLAMA_BIN  llama-quantize, llama-imatrix, llama-perplexity built from it (CMake, Release,
#              GGML_NATIVE; half an hour on 2 cores). Default: WORKDIR/llama-build/bin, else
#              the folder of a `llama-perplexity` on PATH; its shared libraries are looked up
#              there too (LD_LIBRARY_PATH), and an unset LLAMA_SRC is taken from the build's
#              CMakeCache.txt;
#   PY         a python with torch and transformers (convert_hf_to_gguf.py imports torch; PyPI's
#              torch wheel brings CUDA libraries, about 5 GB). Gemma 4's vocabulary is read from
#              tokenizer.json, so sentencepiece is not needed.
#
# Usage: scripts/bench-vs-llamacpp.sh [WORKDIR]   (default /tmp/g4q-vs-llamacpp)
# Env:   THREADS (2), CTX (128), CHUNKS (4), REPEAT (1), G4Q (target/release/g4q),
#        DATA (data/eval.txt), LAYERS (4), KEEP=1 to keep WORKDIR's big files afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/g4q-vs-llamacpp}
THREADS=${THREADS:-2}
CTX=${CTX:-128}
CHUNKS=${CHUNKS:-4}
REPEAT=${REPEAT:-1}
LAYERS=${LAYERS:-4}
G4Q=${G4Q:-$ROOT/target/release/g4q}
DATA=${DATA:-$ROOT/data/eval.txt}
if [ -z "${LLAMA_BIN:-}" ]; then
    LLAMA_BIN=$WORK/llama-build/bin
    if [ ! -x "$LLAMA_BIN/llama-perplexity" ] && command -v llama-perplexity >/dev/null; then
        LLAMA_BIN=$(dirname "$(command -v llama-perplexity)")
    fi
fi
if [ -z "${LLAMA_SRC:-}" ]; then
    LLAMA_SRC=$WORK/llama-cpp-python/vendor/llama.cpp
    cache=$LLAMA_BIN/../CMakeCache.txt
    if [ ! -f "$LLAMA_SRC/convert_hf_to_gguf.py" ] && [ -f "$cache" ]; then
        LLAMA_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
    fi
fi
PY=${PY:-$WORK/venv/bin/python}
mkdir -p "$WORK"
log() { echo "bench-vs-llamacpp: $*" >&2; }

# --- setup (skipped when present) -----------------------------------------------------------
if [ ! -f "$LLAMA_SRC/convert_hf_to_gguf.py" ]; then
    log "fetching the llama-cpp-python 0.3.36 sdist (llama.cpp sources)"
    # --no-binary for this package only: its build tools (cmake, scikit-build-core) come as
    # wheels to read the sdist's metadata, instead of being compiled from source.
    python3 -m pip download llama-cpp-python==0.3.36 --no-binary llama-cpp-python --no-deps \
        -d "$WORK/sdist"
    tar -xzf "$WORK"/sdist/llama_cpp_python-0.3.36.tar.gz -C "$WORK"
    mv "$WORK/llama_cpp_python-0.3.36" "$WORK/llama-cpp-python"
    LLAMA_SRC=$WORK/llama-cpp-python/vendor/llama.cpp
fi
if [ ! -x "$LLAMA_BIN/llama-perplexity" ]; then
    log "building llama-quantize, llama-imatrix, llama-perplexity"
    nice -n 10 cmake -S "$LLAMA_SRC" -B "$WORK/llama-build" -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CURL=OFF -DGGML_NATIVE=ON >/dev/null
    nice -n 10 cmake --build "$WORK/llama-build" -j "$THREADS" \
        --target llama-quantize llama-imatrix llama-perplexity >/dev/null
    LLAMA_BIN=$WORK/llama-build/bin
fi
# A shared-library build keeps libllama and libggml beside the tools.
export LD_LIBRARY_PATH=$LLAMA_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! "$PY" -c 'import torch, transformers' 2>/dev/null; then
    log "making $WORK/venv (torch, transformers from PyPI)"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet torch transformers numpy safetensors 'protobuf<5'
    PY=$WORK/venv/bin/python
fi
[ -x "$G4Q" ] || (cd "$ROOT" && cargo build --release --bin g4q)

MODEL=$WORK/e2b-$LAYERS
if [ ! -f "$MODEL/model.safetensors" ]; then
    "$G4Q" synth --variant e2b --layers "$LAYERS" --out "$MODEL"
fi
# llama.cpp's gemma4 vocabulary refuses a BPE tokenizer without merges, and synth's has none
# (every character falls back to bytes). Give it one merge that can never fire: its two parts
# are multi-character tokens, which BPE never starts from, so both tools tokenize as before.
"$PY" - "$MODEL/tokenizer.json" <<'PYEOF'
import json, sys
path = sys.argv[1]
tok = json.load(open(path, encoding="utf-8"))
bpe = tok["model"]
if not bpe["merges"]:
    vocab = bpe["vocab"]
    last = max(vocab, key=vocab.get)
    a, b = [k for k, _ in sorted(vocab.items(), key=lambda kv: kv[1])[-3:-1]]
    vocab[a + b] = vocab.pop(last)
    bpe["merges"] = [[a, b]]
    json.dump(tok, open(path, "w", encoding="utf-8"), ensure_ascii=False)
PYEOF

# --- measurements ---------------------------------------------------------------------------
export RAYON_NUM_THREADS=$THREADS
ROWS=()
# timed LABEL TOOL CMD...: runs CMD, keeps its output in $WORK/LABEL.log, records wall s and RSS.
timed() {
    local label=$1 tool=$2
    shift 2
    /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" >"$WORK/$label.log" 2>&1 || {
        log "$label failed; see $WORK/$label.log"
        tail -n 5 "$WORK/$label.log" >&2
        exit 1
    }
    read -r secs kb <"$WORK/time.txt"
    ROWS+=("| $label | $tool | $secs | $((kb / 1024)) |")
    log "$label ($tool): $secs s, $((kb / 1024)) MiB"
}

for run in $(seq 1 "$REPEAT"); do
    rm -f "$WORK"/g4q-Q4_K_M.gguf "$WORK"/llama-bf16.gguf "$WORK"/llama-Q4_K_M.gguf
    # --intermediate bf16: the chain compared is convert_hf_to_gguf.py --outtype bf16, whose type
    # the tensors llama-quantize leaves unquantized (per_layer_model_proj) keep.
    timed "convert#$run" g4q "$G4Q" convert "$MODEL" --type Q4_K_M --intermediate bf16 \
        --out "$WORK/g4q-Q4_K_M.gguf"
    timed "convert#$run" "convert_hf_to_gguf bf16" \
        "$PY" "$LLAMA_SRC/convert_hf_to_gguf.py" "$MODEL" --outtype bf16 \
        --outfile "$WORK/llama-bf16.gguf"
    timed "convert#$run" "llama-quantize Q4_K_M" \
        "$LLAMA_BIN/llama-quantize" "$WORK/llama-bf16.gguf" "$WORK/llama-Q4_K_M.gguf" Q4_K_M "$THREADS"
    if cmp -s "$WORK/g4q-Q4_K_M.gguf" "$WORK/llama-Q4_K_M.gguf"; then
        same="byte-identical"
    else
        same="DIFFERENT"
    fi

    timed "imatrix#$run" g4q "$G4Q" imatrix "$MODEL" --data "$DATA" --ctx "$CTX" \
        --chunks "$CHUNKS" --out "$WORK/g4q-imatrix.gguf"
    timed "imatrix#$run" llama-imatrix "$LLAMA_BIN/llama-imatrix" -m "$WORK/llama-bf16.gguf" \
        -f "$DATA" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" -o "$WORK/llama-imatrix.gguf"

    timed "verify#$run" g4q "$G4Q" verify --reference "$MODEL" \
        --candidate "$WORK/g4q-Q4_K_M.gguf" --data "$DATA" --ctx "$CTX" --chunks "$CHUNKS" \
        --threads "$THREADS"
    # -nr (--no-repack): no extra buffer types. On CPUs with AMX, llama.cpp otherwise puts the
    # Q4_K/Q6_K weights in its AMX buffer, and the --kl-divergence run segfaults inside
    # ggml_backend_amx_mul_mat (gdb backtrace, 2026-12-03). Both runs get it, so they compute
    # alike; the bf16 weights have no AMX kernels (neither has llama-imatrix, which runs on them).
    timed "verify#$run" "llama-perplexity --kl-divergence-base (bf16)" \
        "$LLAMA_BIN/llama-perplexity" -m "$WORK/llama-bf16.gguf" -f "$DATA" -c "$CTX" \
        --chunks "$CHUNKS" -t "$THREADS" -nr --kl-divergence-base "$WORK/base.kld"
    timed "verify#$run" "llama-perplexity --kl-divergence (Q4_K_M)" \
        "$LLAMA_BIN/llama-perplexity" -m "$WORK/llama-Q4_K_M.gguf" -c "$CTX" \
        --chunks "$CHUNKS" -t "$THREADS" -nr --kl-divergence-base "$WORK/base.kld" --kl-divergence
    rm -f "$WORK/base.kld"
done

echo
echo "e2b synth, $LAYERS layers, $THREADS threads, ctx $CTX, $CHUNKS chunks;" \
    "$(date -u '+%F %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Q4_K_M files of g4q and llama-quantize: $same"
echo
echo "| step | tool | wall s | peak RSS MiB |"
echo "|---|---|---:|---:|"
printf '%s\n' "${ROWS[@]}"
if [ "${KEEP:-0}" != 1 ]; then
    rm -f "$WORK"/*.gguf
fi
