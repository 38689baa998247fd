#!/usr/bin/env bash
# Issue 9 on the device machine: the digits model (SPEC §9) on the GPU backend (native wgpu on
# Vulkan) next to the CPU reference of the same host, in the same process (`gpu-bench --only
# digits`: one forward+backward pass at h = 32, 128, 512 and the default preset end to end), then
# the CLI's default preset on both backends, then the GPU-vs-CPU parity tests of tests/gpu_digits.rs.
# Expects .gl/*.deb and, built here: cargo build --release --bin gpu-bench --bin lora-one-lab;
# cargo test --release --test gpu_digits --no-run (the test binary copied to .benchbin/gpu_digits).
set -u
. "$(dirname "$0")/device-env.sh"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/nvidia-smi.txt"
chmod +x .benchbin/*
.benchbin/gpu-bench --only digits 2>&1 | tee "$OUT/digits-bench.log"
for be in gpu cpu; do
  for rep in 1 2 3; do
    /usr/bin/time -f "cli finetune $be rep$rep wall %e s" .benchbin/lora-one-lab finetune --backend "$be" \
      2>&1 | grep -E "methods|wall|LoRA-One" | tee -a "$OUT/digits-bench.log"
  done
done
CI=1 .benchbin/gpu_digits --test-threads 1 2>&1 | tail -12 | tee "$OUT/digits-tests.log"
