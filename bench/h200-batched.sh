#!/usr/bin/env bash
# Issue 7 on the device machine: the batched path's benchmarks (crossover, ensembles at d = 100,
# 400, 1000, the presets end to end) next to the CPU reference in the same process, the PyTorch
# batched step in the same job, and the batched parity tests with long (time-sized) chunks.
# Expects .gl/*.deb (Vulkan loader, see the device README) and .benchbin/{gpu-bench,gpu_batched}
# built here: cargo build --release --bin gpu-bench; cargo test --release --test gpu_batched --no-run
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export XDG_RUNTIME_DIR=$(mktemp -d)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/gdump
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$OUT/nvidia-smi.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/nvidia-smi.txt"
chmod +x .benchbin/*
CI=1 timeout 200 .benchbin/gpu_batched --test-threads=1 2>&1 | tee "$OUT/batched-tests.log"
timeout 400 .benchbin/gpu-bench --only ${BENCH_ONLY:-batched,presets} --dump /tmp/gdump 2>&1 | tee "$OUT/batched.log"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/torch_batched.py /tmp/gdump 2>&1 | tee "$OUT/torch-batched.log"
