#!/usr/bin/env python3
"""Build ablated variants of the batched kernel (issue 7): where a step's and a record's GPU time
goes, measured by removing one phase at a time.

Each variant edits shaders/batched.wgsl (an anchor that must be found, replaced), builds
`gpu-bench` in release, copies it to .benchbin/gpu-bench-<name>, and restores the shader (also on
failure). `base` is the unedited kernel, built the same way. The variants compute wrong numbers
on purpose: they are for timing only (runs whose loss goes non-finite stop updating, so the
update phase of a variant that breaks the step may be cut short too; the products and Grams run
for stopped runs as well). `bench/h200-ablate.sh` runs them on the device.

Usage: python3 bench/ablate_batched.py [NAME ...]   (default: all)
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHADER = os.path.join(ROOT, "shaders", "batched.wgsl")

# name -> [(anchor, replacement)]
ABLATIONS = {
    "base": [],
    # (a) X = Σ̂A
    "no-sigma-a": [("product(e, p.d, p.d, p.o_sig, av, xv);", "")],
    # (b) Y = G Bᵀ
    "no-g-bt": [("product(e - tiles, p.d, p.k, p.o_gt, bv, yv);", "")],
    # (f) Z = (AᵀG)ᵀ
    "no-gt-a": [("product(e, p.k, p.d, p.o_g, av, xv);", "")],
    # the Grams Q = BBᵀ (a) and P = AᵀX (b)
    "no-grams": [
        ("gram_tile(diag_tile(e - nx), p.k, bv, false, bv, p.wq, 0u, 0u);", ""),
        ("gram_tile(diag_tile(e), p.d, av, false, xv, p.wp, 0u, 0u);", ""),
    ],
    # (e) ∇_A = X·Q − Y and (g) ∇_B = B·P − Z (every form: two vec4s a thread for r a multiple of 8, one for r a multiple of 4, scalar)
    "no-row-blocks": [
        ("                stw4(o, m[0] - ldw4(o));\n                stw4(o + 1u, m[1] - ldw4(o + 1u));\n", ""),
        ("stw4(o, row_block4(row, cv, p.wx, false, p.wq, false, false) - ldw4(o));", ""),
        ("                stw4(o, s - ldw4(o));\n", ""),
        ("stw(o, row_block(row, c, p.wx, false, p.wq, false, false) - ldw(o));", ""),
        ("                stw(o, s - ldw(o));\n", ""),
    ],
    # (h) the update of A and B (both forms)
    "no-update": [
        ("                    stw4(o, ldw4(o) - eta * s);\n", ""),
        ("                stw(o, ldw(o) - eta * s);\n", ""),
    ],
    # (c) the trace parts tr(AᵀY) (the loads go with the sums)
    "no-trace": [(
        "                acc += a0 * y0;\n"
        "                acc += a1 * y1;\n"
        "                acc += a2 * y2;\n"
        "                acc += a3 * y3;\n",
        "",
    )],
    # records: the eigensolves (sin θ_A, sin θ_B, σ(AB) from the Grams; r ≤ 8)
    "no-align": [(
        "    if (x >= p.snt || g >= p.nb || p.r > SMAX) { return; }",
        "    if (x >= p.snt || g >= p.nb || p.r > SMAX || p.r < 1000u) { return; }",
    )],
    # records: the factor Grams, and the eigensolves too (fed no Grams they would converge at
    # once on whatever the scratch holds: compare with no-align)
    "no-record-grams": [(
        "    if (x >= p.snt || g >= p.nb || p.r > SMAX) { return; }",
        "    if (x >= p.snt || g >= p.nb || p.r > SMAX || p.r < 1000u) { return; }",
    ), (
        "    factor_grams(tid, so, 0u, p.d, p.o_u, go, go + 2u * rr);\n"
        "    workgroupBarrier();\n"
        "    factor_grams(tid, so, p.d, p.k, p.o_v, go + rr, go + 3u * rr);",
        "    workgroupBarrier();",
    )],
    # records: the risk and error over the d×k entries
    "no-record-risk": [("    let n = p.d * p.k;\n    let si = WG / p.k;", "    let n = 0u;\n    let si = WG / p.k;")],
}


def build(name, edits, original):
    src = original
    for anchor, new in edits:
        count = src.count(anchor)
        if count == 0:
            raise SystemExit(f"{name}: anchor not found (the kernel changed?): {anchor!r}")
        src = src.replace(anchor, new)
    with open(SHADER, "w") as f:
        f.write(src)
    subprocess.run(["cargo", "build", "--release", "--bin", "gpu-bench"], cwd=ROOT, check=True)
    os.makedirs(os.path.join(ROOT, ".benchbin"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "target", "release", "gpu-bench"),
                os.path.join(ROOT, ".benchbin", f"gpu-bench-{name}"))
    print(f"built .benchbin/gpu-bench-{name}", flush=True)


def main():
    names = sys.argv[1:] or list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; known: {list(ABLATIONS)}")
    with open(SHADER) as f:
        original = f.read()
    try:
        for n in names:
            build(n, ABLATIONS[n], original)
    finally:
        with open(SHADER, "w") as f:
            f.write(original)
    # leave target/ with the real kernel
    subprocess.run(["cargo", "build", "--release", "--bin", "gpu-bench"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
