#!/usr/bin/env bash
# Issue 7 on the device machine: the batched kernel's ablations (bench/ablate_batched.py builds
# .benchbin/gpu-bench-<name>, one phase removed each; `base` is the real kernel). Each runs the
# kernel profile and the records profile at d = k = 100, r = 8 for PROFILE_B (default 1024) runs,
# twice, base first and last so that drift shows. Expects .gl/*.deb (see bench/device-env.sh).
set -u
. "$(dirname "$0")/device-env.sh"
chmod +x .benchbin/*
export SKIP_CROSSOVER=1 BATCHED_PROFILE_ONLY=1 PROFILE_B=${PROFILE_B:-1024}
variants=$(ls .benchbin | sed -n 's/^gpu-bench-//p' | grep -v '^base$')
for round in 1 2; do
  for v in base $variants base; do
    echo "=== $v (round $round)"
    timeout 120 ".benchbin/gpu-bench-$v" --only batched 2>&1 | grep -E "^(kernel|records) " | tee -a "$OUT/ablate-$v.log"
  done
done
