#!/usr/bin/env bash
# Runs the wgpu benchmarks and the PyTorch baselines side by side on the device machine.
# Expects: .gl/*.deb (Vulkan/GL loaders, see the device README) and .benchbin/gpu-bench (built
# here: cargo build --release --bin gpu-bench; cp target/release/gpu-bench .benchbin/).
# Writes $OUT/gpu.log and $OUT/torch.log (RESULT json lines + human lines).
set -u
. "$(dirname "$0")/device-env.sh"
chmod +x .benchbin/gpu-bench
timeout 420 .benchbin/gpu-bench --dump /tmp/gdump ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu.log"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/torch_baselines.py /tmp/gdump 2>&1 | tee "$OUT/torch.log"
