#!/usr/bin/env bash
# Issue 8 on the device machine: the sweep presets end to end through the CLI, on the GPU backend
# (native wgpu on Vulkan) and on the CPU reference of the same host, one after the other in the
# same job. Expects .gl/*.deb (Vulkan loader, see the device README) and .benchbin/lora-one-lab
# built here: cargo build --release --bin lora-one-lab
set -u
. "$(dirname "$0")/device-env.sh"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/nvidia-smi.txt"
chmod +x .benchbin/*
for preset in ${SWEEPS:-fig2 ln-d-law seeds}; do
  for be in gpu cpu; do
    for rep in 1 2 3; do
      /usr/bin/time -f "$preset $be rep$rep wall %e s, max RSS %M KB" \
        timeout 300 .benchbin/lora-one-lab sweep --preset "$preset" --backend "$be" -q \
        --out "$OUT/$preset-$be.json" 2>&1 | tee -a "$OUT/sweep.log"
      python3 -c "import json,sys; r=json.load(open('$OUT/$preset-$be.json')); print('$preset $be rep$rep engine', round(r['wall_ms']), 'ms,', r['trajectory_steps'], 'trajectory-steps, slope', r.get('slope_t_star_ln_d'))" | tee -a "$OUT/sweep.log"
    done
  done
done
