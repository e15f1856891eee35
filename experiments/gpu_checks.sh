#!/usr/bin/env bash
# One device call (see /work/.library/device/README.md): the GPU-only tests and the GPU timings that
# the CPU machine cannot give. From the repository root on the lent machine:
#   bash experiments/gpu_checks.sh [all|tests|kernel24|backends|fitpath|realry|realry-bench|issue13]
# results under $OUT/results (issue13: one archive $OUT/r13.tgz, refreshed after every stage: at most 8
# files come back from a call)
. experiments/device_env.sh
what=${1:-all}
REPO=$PWD
R=${OUT:-experiments}/results
mkdir -p "$R"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [[ $what == all || $what == tests ]]; then
  # tests marked gpu (fused kernels, fit on CUDA, spectrum on CUDA, cross-backend, 2:4 kernels); run from
  # /tmp in append import mode so the repository root cannot shadow the installed layout in /tmp/pkg
  (cd /tmp && python3 -m pytest -q -m gpu -p no:cacheprovider --import-mode=append -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "$REPO/tests" 2>&1 | tail -25) | tee "$R/gpu_tests.log"
fi
if [[ $what == all || $what == kernel24 ]]; then  # 2:4 semi-structured kernels against dense (issue 6)
  python3 experiments/sparsity_lowrank.py --kernel-only --device cuda --out "$R/sparsity_lowrank"
fi
if [[ $what == all || $what == backends ]]; then  # one row per simulator backend (issue 7)
  python3 experiments/bench_simulator.py --device cuda --points 1024 16384 65536 --qubits 8 --qubit-points 1024 \
    --strategies fused:ieee+graph --backends torch pennylane jax --backend-points 1024 16384 \
    --repeats 5 --tag cuda_backends --out "$R"
fi
if [[ $what == fitpath ]]; then  # issue 13 item 4: qlite.fit's CUDA-graph step (tests) and the user's path vs the best step
  (cd /tmp && python3 -m pytest -q -m gpu -p no:cacheprovider --import-mode=append -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" "$REPO/tests/fit/test_cuda_graph.py" "$REPO/tests/fit/test_fit.py" 2>&1 | tail -25) | tee "$R/gpu_tests_fitpath.log"
  python3 experiments/bench_fit_path.py --device cuda --out "$R" 2>&1 | tail -30
fi
if [[ $what == realry ]]; then  # issue 13 item 2: the fused real-RY kernels: tests, accuracy, tuning
  (cd /tmp && python3 -m pytest -q -p no:cacheprovider --import-mode=append -c "$REPO/pyproject.toml" -m "not slow" \
    --rootdir "$REPO" "$REPO/tests/simulators/test_fused_realry.py" "$REPO/tests/simulators/test_fused.py" 2>&1 | tail -8) \
    | tee "$R/gpu_tests_realry.log"
  timeout 150 python3 experiments/check_fused.py --device cuda --qubits 8 10 12 --precisions ieee tf32x3 --out "$R"
  timeout 150 python3 experiments/tune_fused.py --device cuda --kernel realry --qubits 8 --blocks 4 8 16 \
    --back-blocks 1 2 4 --warps 4 8 --profile fused-realry:ieee --out "$R/tune8" 2>&1 | grep -v "^tune "
  timeout 120 python3 experiments/tune_fused.py --device cuda --kernel realry --qubits 10 12 --blocks 1 2 \
    --back-blocks 1 2 --warps 4 8 --profile --out "$R/tune12" 2>&1 | grep -v "^tune "
  for k in realry complex; do  # the hybrid-LM workload: one 8-qubit QuantumLayer on 4,096 tokens
    timeout 60 python3 experiments/tune_fused.py --device cuda --kernel $k --qubits 8 --batch 4096 --blocks 8 \
      --back-blocks 4 --warps 8 --profile --out "$R/layer4096_$k" 2>&1 | grep -v "^tune "
  done
fi
if [[ $what == realry-bench ]]; then  # issue 13 targets: default path vs each kernel family vs PennyLane, same run
  python3 experiments/bench_simulator.py --device cuda --points 1024 16384 65536 --qubits 10 12 14 \
    --qubit-points 65536 --strategies auto+graph fused-realry:ieee+graph fused-realry:tf32x3+graph \
    fused-complex:ieee+graph factored+graph --backends --repeats 5 --tag cuda_realry --out "$R"
fi
if [[ $what == issue13 ]]; then  # issue 13 in one call: graph capture on the real-RY path, the user's path, targets
  T=/tmp/r13; rm -rf $T; mkdir -p $T
  pack() { tar czf "$OUT/r13.tgz" -C "$T" . ; }
  (cd /tmp && timeout 150 python3 -m pytest -q -p no:cacheprovider --import-mode=append -c "$REPO/pyproject.toml" \
    --rootdir "$REPO" -m "gpu or not slow" "$REPO/tests/fit/test_cuda_graph.py" "$REPO/tests/simulators/test_fused_realry.py" \
    "$REPO/tests/simulators/test_fused.py" 2>&1 | tail -30) | tee "$T/gpu_tests.log"; pack
  # where a capture fails, the whole traceback (qlite.fit's fallback logs one line)
  timeout 60 python3 -c "
import qlite
from qlite import data
from qlite.models import ModelSpec
r = qlite.fit(ModelSpec('qiren').build(2, 1, seed=0), data.image('camera', size=32), epochs=8, device='cuda',
              progress=False, cuda_graph=True)
print('capture ok:', r.step_mode)" > "$T/capture.log" 2>&1; tail -3 "$T/capture.log"; pack
  timeout 150 python3 experiments/bench_fit_path.py --device cuda --out "$T" 2>&1 | tail -16; pack
  for k in realry complex; do  # the hybrid-LM workload: one 8-qubit QuantumLayer on 4,096 tokens
    timeout 60 python3 experiments/tune_fused.py --device cuda --kernel $k --qubits 8 --batch 4096 --blocks 8 16 \
      --back-blocks 2 4 --warps 4 8 --out "$T/layer4096_$k" 2>&1 | grep -v "^tune " | tail -12
  done; pack
  timeout 200 python3 experiments/bench_simulator.py --device cuda --points 1024 65536 --qubits 12 \
    --qubit-points 65536 --strategies auto+graph fused-realry:ieee+graph fused-complex:ieee+graph factored+graph \
    --backends --repeats 3 --tag cuda_realry --out "$T" 2>&1 | tail -20; pack
fi
if [[ $what == issue13b ]]; then  # issue 13: where the real-RY kernels stop paying (10, 12 qubits), the adapters' step
  T=/tmp/r13b; rm -rf $T; mkdir -p $T
  pack() { tar czf "$OUT/r13b.tgz" -C "$T" . ; }
  for q in 10 12; do
    timeout 100 python3 experiments/tune_fused.py --device cuda --kernel realry --qubits $q --batch 4096 --blocks 1 2 \
      --back-blocks 1 --warps 4 8 --out "$T/tune${q}_realry" 2>&1 | grep "^| " | tail -8; pack
  done
  timeout 60 python3 experiments/tune_fused.py --device cuda --kernel complex --qubits 10 --batch 4096 --blocks 1 2 \
    --back-blocks 1 --warps 8 --out "$T/tune10_complex" 2>&1 | grep "^| " | tail -6; pack
  timeout 90 python3 experiments/bench_lm.py --device cuda --model smollm2-arch --steps 5 --warmup 1 \
    --arms lora,quantum-adapter --out "$T/bench_lm_cuda" 2>&1 | tail -8; pack
fi
