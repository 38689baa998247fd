#!/usr/bin/env bash
# Runs the wgpu benchmarks and the PyTorch baselines side by side on the device machine.
# Expects: .gl/*.deb (Vulkan/GL loaders, see the device README) and .benchbin/gpu-bench (built
# here: cargo build --release --bin gpu-bench; cp target/release/gpu-bench .benchbin/).
# Writes $OUT/gpu.log and $OUT/torch.log (RESULT json lines + human lines).
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
chmod +x .benchbin/gpu-bench
timeout 420 .benchbin/gpu-bench --dump /tmp/gdump ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu.log"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/torch_baselines.py /tmp/gdump 2>&1 | tee "$OUT/torch.log"
