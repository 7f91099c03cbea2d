#!/usr/bin/env bash
# AWQ interop check (not part of CI: it downloads torch, transformers and compressed-tensors).
#
# Writes g4q's AWQ int4 release (compressed-tensors "pack-quantized") of MODEL, loads it with
# transformers + compressed-tensors in float32 (so the bf16 scales widen exactly, as in g4q's
# reader), and compares the logits with `g4q forward` on the same folder: the largest absolute
# difference must be at most 1e-4 of the largest logit.
#
# usage: scripts/interop.sh [MODEL_DIR] [CALIB.txt]
#   defaults: ../shared/fixtures/trained-e2b/released-bf16 and its calib.txt
#   env: WORK (scratch folder, default target/interop), VENV (default $WORK/venv),
#        TORCH_INDEX (pip index for torch, default https://download.pytorch.org/whl/cpu),
#        GROUP (AWQ group size, default 64: the fixture's rows are 256 wide)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/fixtures/trained-e2b/released-bf16}
DATA=${2:-$(dirname "$MODEL")/calib.txt}
WORK=${WORK:-target/interop}
VENV=${VENV:-$WORK/venv}
GROUP=${GROUP:-64}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
mkdir -p "$WORK"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # The CPU wheel is ~200 MB; PyPI's default torch pulls ~3 GB of CUDA runtime wheels.
  "$VENV/bin/pip" install --quiet --index-url "$TORCH_INDEX" torch ||
    "$VENV/bin/pip" install --quiet torch
  "$VENV/bin/pip" install --quiet transformers compressed-tensors safetensors numpy
fi

cargo build --release --quiet
G4Q=target/release/g4q
"$G4Q" convert "$MODEL" --format awq --data "$DATA" --group-size "$GROUP" --awq-tokens 256 \
  --out "$WORK/awq"

# The same token ids for both sides: BOS + the start of the calibration text.
IDS=$("$VENV/bin/python" - "$WORK/awq" "$DATA" <<'PY'
import sys
from tokenizers import Tokenizer
import json
tok = Tokenizer.from_file(f"{sys.argv[1]}/tokenizer.json")
cfg = json.load(open(f"{sys.argv[1]}/config.json"))
bos = cfg.get("text_config", cfg).get("bos_token_id", 2)
text = open(sys.argv[2], encoding="utf-8").read()[:2000]
ids = [bos] + tok.encode(text, add_special_tokens=False).ids[:63]
print(",".join(map(str, ids)))
PY
)
"$G4Q" forward "$WORK/awq" --tokens "$IDS" --out "$WORK/g4q-logits.safetensors"

"$VENV/bin/python" - "$WORK/awq" "$IDS" "$WORK/g4q-logits.safetensors" <<'PY'
import sys
import numpy as np
import torch
from safetensors.numpy import load_file
import transformers

folder, ids, ours_path = sys.argv[1], sys.argv[2], sys.argv[3]
ids = torch.tensor([[int(i) for i in ids.split(",")]])
model = None
for cls in ("AutoModelForCausalLM", "AutoModelForImageTextToText"):
    try:
        # dequantize=True: compressed-tensors unpacks every int4 weight at load, in the scale's
        # dtype (bf16), which is what g4q's reader reproduces. (The default "keep compressed"
        # route of transformers 5 registers the asymmetric zero point unpacked, [out, groups],
        # and refuses the packed [out/8, groups] tensor that compressed-tensors itself writes.)
        model = getattr(transformers, cls).from_pretrained(
            folder,
            dtype=torch.float32,
            quantization_config=transformers.CompressedTensorsConfig(dequantize=True),
        )
        break
    except Exception as e:  # noqa: BLE001 - report and try the next class
        print(f"{cls}: {e}", file=sys.stderr)
if model is None:
    sys.exit("transformers could not load the AWQ release")
model.eval()
with torch.no_grad():
    theirs = model(input_ids=ids).logits[0].float().numpy()
ours = load_file(ours_path)["logits"]
if theirs.shape != ours.shape:
    sys.exit(f"shape mismatch: transformers {theirs.shape}, g4q {ours.shape}")
diff = float(np.abs(theirs - ours).max())
scale = float(np.abs(ours).max())
rel = diff / scale
print(f"logits {ours.shape}: max |diff| {diff:.3e}, max |logit| {scale:.3f}, relative {rel:.3e}")
sys.exit(0 if rel <= 1e-4 else f"FAIL: relative difference {rel:.3e} > 1e-4")
PY
