#!/usr/bin/env python3
"""PyTorch baseline of the batched ensemble benchmark (issue 7), on the same GPU as `gpu-bench
--only batched` (bench/h200.sh runs both in one job).

B vanilla LoRA trajectories on one problem (Sigma-hat, G and Delta written by
`gpu-bench --dump DIR`), d = k, r = 8, eta = 1/64, 1500 GD steps of the factored form of SPEC §1
with batched matmuls (torch.matmul broadcasting / torch.bmm), fp32 with TF32 off, ten steps and
one record (loss by the trace identity, risk = 1/2 ||AB - Delta||_F^2) captured in one CUDA graph
and replayed 150 times; the records are copied out of the graph's buffer after each replay.
Prints `RESULT {json}` lines: time, trajectory-steps per second, TFLOP/s.
Usage: torch_batched.py DUMP_DIR
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")


def result(kind, **kw):
    print("RESULT " + json.dumps({"bench": kind, "impl": "torch", **kw}), flush=True)


def load(path, rows, cols):
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(rows, cols)).to(dev)


def run(dump, d, B, r=8, steps=1500, every=10, eta=1.0 / 64, alpha2=1e-3):
    sigma = load(os.path.join(dump, f"b{d}_sigma.f32"), d, d)
    G = load(os.path.join(dump, f"b{d}_g.f32"), d, d)
    delta = load(os.path.join(dump, f"b{d}_delta.f32"), d, d)
    gen = torch.Generator(device=dev).manual_seed(0)
    A0 = torch.randn(B, d, r, device=dev, generator=gen) * math.sqrt(alpha2)
    A = A0.clone()
    Bm = torch.zeros(B, r, d, device=dev)
    rec = torch.zeros(2, B, device=dev)

    def step():
        SA = torch.matmul(sigma, A)
        BBt = torch.bmm(Bm, Bm.transpose(1, 2))
        AtSA = torch.bmm(A.transpose(1, 2), SA)
        GBt = torch.matmul(G, Bm.transpose(1, 2))
        AtG = torch.matmul(A.transpose(1, 2), G)
        gA = torch.baddbmm(GBt, SA, BBt, beta=-1.0)
        gB = torch.baddbmm(AtG, AtSA, Bm, beta=-1.0)
        A.sub_(eta * gA)
        Bm.sub_(eta * gB)

    def record():
        SA = torch.matmul(sigma, A)
        BBt = torch.bmm(Bm, Bm.transpose(1, 2))
        AtSA = torch.bmm(A.transpose(1, 2), SA)
        AtG = torch.matmul(A.transpose(1, 2), G)
        rec[0].copy_(0.5 * (AtSA * BBt).sum((1, 2)) - (AtG * Bm).sum((1, 2)))
        rec[1].copy_(0.5 * (torch.bmm(A, Bm) - delta).square().sum((1, 2)))

    def chunk():
        for _ in range(every):
            step()
        record()

    # warm up on a side stream (required before capture), then capture one chunk
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            chunk()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        chunk()
    times = []
    hist = torch.zeros(steps // every, 2, B, device=dev)
    for _ in range(3):
        A.copy_(A0)
        Bm.zero_()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(steps // every):
            graph.replay()
            hist[i].copy_(rec)
        out = hist.cpu()
        times.append((time.perf_counter() - t) * 1e3)
    ms = sorted(times)[1]
    flops = (2 * d * d * r + 4 * d * d * r + 4 * 2 * d * r * r) * B * steps
    risk_end = float(out[-1, 1].median())
    result("batched", d=d, k=d, r=r, trajectories=B, steps=steps, record_every=every,
           ms=ms, samples_ms=times, traj_steps_per_s=B * steps / ms * 1e3,
           tflops=flops / ms / 1e9, median_final_risk=risk_end)
    print(f"torch batched d=k={d} B={B}: {ms:.1f} ms = {B * steps / ms / 1e3:.2f} M traj-steps/s, "
          f"{flops / ms / 1e9:.2f} TFLOP/s (median final risk {risk_end:.3e})", flush=True)


if __name__ == "__main__":
    dump = sys.argv[1]
    for d in (100, 400, 1000):
        if os.path.exists(os.path.join(dump, f"b{d}_g.f32")):
            run(dump, d, 1024)
