#!/usr/bin/env bash
# One device call (see /work/.library/device/README.md): the GPU-only tests and the GPU timings that
# the CPU machine cannot give. From the repository root on the lent machine:
#   bash experiments/gpu_checks.sh            # results under $OUT/results (or experiments/results)
. experiments/device_env.sh
R=${OUT:-experiments}/results
mkdir -p "$R"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
# 1. tests marked gpu (fused kernels, fit on CUDA, spectrum on CUDA, cross-backend, 2:4 kernels)
# (--import-mode=append: the repository root must not shadow the installed layout in /tmp/pkg)
python3 -m pytest -q -m gpu -p no:cacheprovider --import-mode=append tests 2>&1 | tail -25 | tee "$R/gpu_tests.log"
# 2. 2:4 semi-structured kernels against dense (issue 6)
python3 experiments/sparsity_lowrank.py --kernel-only --device cuda --out "$R/sparsity_lowrank"
# 3. one row per simulator backend next to qlite's fastest path and PennyLane (issue 7)
python3 experiments/bench_simulator.py --device cuda --points 1024 16384 65536 --qubits 8 --qubit-points 1024 \
  --strategies fused:ieee+graph --backends torch pennylane jax --backend-points 1024 16384 \
  --repeats 5 --tag cuda_backends --out "$R"
