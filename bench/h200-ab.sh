#!/usr/bin/env bash
# A/B of builds of the batched engine on the device machine, in one job: each
# .benchbin/gpu-bench-<variant> (built here from the commits to compare, e.g.
# `git checkout A && cargo build --release --bin gpu-bench && cp target/release/gpu-bench
# .benchbin/gpu-bench-a`) runs the ensemble benchmark ROUNDS times, the variants alternating so
# that drift hits them alike; then PyTorch's batched step on the same problems. Each gpu-bench
# process times 3 ensembles (2 at d = 1000): ROUNDS = 3 gives 9 samples a variant.
# Env: VARIANTS (default: every gpu-bench-* in .benchbin), ROUNDS (3), BATCHED_DIMS (100),
# PROFILE_B (1024), BATCHED_IN_FLIGHT etc. as gpu-bench reads them. Expects .gl/*.deb.
set -u
. "$(dirname "$0")/device-env.sh"
chmod +x .benchbin/*
export SKIP_CROSSOVER=1 BATCHED_DIMS=${BATCHED_DIMS:-100} PROFILE_B=${PROFILE_B:-1024}
variants=${VARIANTS:-$(ls .benchbin | sed -n 's/^gpu-bench-//p')}
for i in $(seq 1 "${ROUNDS:-3}"); do
  for v in $variants; do
    echo "=== $v (round $i)"
    timeout 300 ".benchbin/gpu-bench-$v" --only batched --dump /tmp/gdump 2>&1 \
      | tee "$OUT/bench-$v-$i.log" | grep -E "end to end"
  done
done
echo "=== torch"
PYTHONUNBUFFERED=1 timeout 300 python3 bench/torch_batched.py /tmp/gdump 2>&1 | tee "$OUT/torch.log" | grep -v RESULT
# medians of the end-to-end samples per variant
python3 - "$OUT" $variants <<'EOF'
import glob, json, statistics, sys
out, variants = sys.argv[1], sys.argv[2:]
for v in variants:
    by_d = {}
    for f in sorted(glob.glob(f"{out}/bench-{v}-*.log")):
        for line in open(f):
            if line.startswith("RESULT ") and '"bench":"batched"' in line:
                j = json.loads(line[7:])
                by_d.setdefault(j["d"], []).extend(j["gpu_samples_ms"])
    for d, xs in sorted(by_d.items()):
        print(f"{v} d={d}: median {statistics.median(xs):.1f} ms of {len(xs)} ({min(xs):.1f}-{max(xs):.1f})")
EOF
