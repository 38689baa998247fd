#!/usr/bin/env bash
# Issue 7 on the device machine: the batched path's benchmarks (crossover, ensembles at d = 100,
# 400, 1000, the presets end to end) next to the CPU reference in the same process, the PyTorch
# batched step in the same job, and the batched parity tests with long (time-sized) chunks.
# Expects .gl/*.deb (Vulkan loader, see the device README) and .benchbin/{gpu-bench,gpu_batched}
# built here: cargo build --release --bin gpu-bench; cargo test --release --test gpu_batched --no-run
set -u
. "$(dirname "$0")/device-env.sh"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/nvidia-smi.txt"
chmod +x .benchbin/*
CI=1 timeout 200 .benchbin/gpu_batched --test-threads=1 2>&1 | tee "$OUT/batched-tests.log"
timeout 400 .benchbin/gpu-bench --only ${BENCH_ONLY:-batched,presets} --dump /tmp/gdump 2>&1 | tee "$OUT/batched.log"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/torch_batched.py /tmp/gdump 2>&1 | tee "$OUT/torch-batched.log"
