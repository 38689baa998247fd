#!/usr/bin/env python3
"""PyTorch baseline of the batched ensemble benchmark (issue 7), on the same GPU as `gpu-bench
--only batched` (bench/h200.sh runs both in one job).

B vanilla LoRA trajectories on one problem (Sigma-hat, G and Delta written by
`gpu-bench --dump DIR`), d = k, r = 8, eta = 1/64, 1500 GD steps of the factored form of SPEC §1
with batched matmuls (torch.matmul broadcasting / torch.bmm), fp32 with TF32 off, ten steps and
one record (loss by the trace identity, risk = 1/2 ||AB - Delta||_F^2) captured in one CUDA graph
and replayed 150 times; the records are copied out of the graph's buffer after each replay.
Prints `RESULT {json}` lines: time, trajectory-steps per second, TFLOP/s.

Second variant (`metrics="all"`, d = 100 and 400): each record forms every SPEC §4 metric as
gpu-bench's batched path does: loss, risk, ||AB - Delta||_F, sin theta_A and sin theta_B against
G's top-r* singular subspaces (r* = 4, from an f64 SVD of G) and sigma(AB), by the same r x r
route (Grams A^T A, B B^T and the residuals' Grams; batched eigh). torch.linalg.eigh checks its
errors on the host, which a CUDA graph cannot capture: the graph holds the ten steps and the
records run eagerly after each replay.
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


def sin_theta(K, RG, m):
    """Largest principal-angle sine between span of X's top-m left singular vectors and a basis,
    from K = X^T X and the residual Gram RG = R^T R (R = X - basis basis^T X), batched."""
    lam, W = torch.linalg.eigh(0.5 * (K + K.transpose(1, 2)))
    Wm, lm = W[..., -m:], lam[..., -m:].clamp_min(1e-38)
    inner = Wm.transpose(1, 2) @ (0.5 * (RG + RG.transpose(1, 2))) @ Wm
    inner = inner / torch.sqrt(lm.unsqueeze(2) * lm.unsqueeze(1))
    top = torch.linalg.eigvalsh(inner)[..., -1]
    return torch.sqrt(top.clamp(0.0, 1.0)), lam, W


def run(dump, d, B, r=8, steps=1500, every=10, eta=1.0 / 64, alpha2=1e-3, metrics="lite", rs=4):
    sigma = load(os.path.join(dump, f"b{d}_sigma.f32"), d, d)
    G = load(os.path.join(dump, f"b{d}_g.f32"), d, d)
    delta = load(os.path.join(dump, f"b{d}_delta.f32"), d, d)
    gen = torch.Generator(device=dev).manual_seed(0)
    A0 = torch.randn(B, d, r, device=dev, generator=gen) * math.sqrt(alpha2)
    A = A0.clone()
    Bm = torch.zeros(B, r, d, device=dev)
    nrec = 2 if metrics == "lite" else 5 + r
    rec = torch.zeros(nrec, B, device=dev)
    svd = torch.linalg.svd(G.double())
    U = svd.U[:, :rs].float().contiguous()
    V = svd.Vh[:rs, :].T.float().contiguous()

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

    def record_loss():
        """The loss by the trace identity into rec[0]; returns BB^T."""
        SA = torch.matmul(sigma, A)
        BBt = torch.bmm(Bm, Bm.transpose(1, 2))
        AtSA = torch.bmm(A.transpose(1, 2), SA)
        AtG = torch.matmul(A.transpose(1, 2), G)
        rec[0].copy_(0.5 * (AtSA * BBt).sum((1, 2)) - (AtG * Bm).sum((1, 2)))
        return BBt

    def record():
        record_loss()
        rec[1].copy_(0.5 * (torch.bmm(A, Bm) - delta).square().sum((1, 2)))

    def record_all():
        BBt = record_loss()
        sq = (torch.bmm(A, Bm) - delta).square().sum((1, 2))
        rec[1].copy_(0.5 * sq)
        rec[2].copy_(sq.sqrt())
        K = torch.bmm(A.transpose(1, 2), A)
        Ra = A - torch.matmul(U, torch.matmul(U.T, A))
        Bt = Bm.transpose(1, 2)
        Rb = Bt - torch.matmul(V, torch.matmul(V.T, Bt))
        sa, lam, W = sin_theta(K, torch.bmm(Ra.transpose(1, 2), Ra), min(r, rs))
        sb, _, _ = sin_theta(BBt, torch.bmm(Rb.transpose(1, 2), Rb), min(r, rs))
        rec[3].copy_(sa)
        rec[4].copy_(sb)
        H = (W * lam.clamp_min(0.0).sqrt().unsqueeze(1)) @ W.transpose(1, 2)
        ev = torch.linalg.eigvalsh(H @ (0.5 * (BBt + BBt.transpose(1, 2))) @ H)
        rec[5:].copy_(ev.clamp_min(0.0).sqrt().flip(-1).T)

    rec_fn = record if metrics == "lite" else record_all

    def steps_only():
        for _ in range(every):
            step()

    def chunk():
        steps_only()
        rec_fn()

    # warm up on a side stream (required before capture), then capture one chunk
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            chunk()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    # eigh checks its errors on the host, which a graph cannot capture: with every metric the
    # graph holds the ten steps and the records run eagerly after each replay
    eager_records = metrics != "lite"
    with torch.cuda.graph(graph):
        if eager_records:
            steps_only()
        else:
            chunk()
    times = []
    hist = torch.zeros(steps // every, nrec, B, device=dev)
    for _ in range(3):
        A.copy_(A0)
        Bm.zero_()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(steps // every):
            graph.replay()
            if eager_records:
                rec_fn()
            hist[i].copy_(rec)
        out = hist.cpu()
        times.append((time.perf_counter() - t) * 1e3)
    ms = sorted(times)[1]
    flops = (2 * d * d * r + 4 * d * d * r + 4 * 2 * d * r * r) * B * steps
    risk_end = float(out[-1, 1].median())
    extra = {}
    if metrics == "all":
        extra = {"median_final_sin_a": float(out[-1, 3].median()),
                 "eager_records": eager_records}
    result("batched", d=d, k=d, r=r, trajectories=B, steps=steps, record_every=every,
           metrics=metrics, ms=ms, samples_ms=times, traj_steps_per_s=B * steps / ms * 1e3,
           tflops=flops / ms / 1e9, median_final_risk=risk_end, **extra)
    print(f"torch batched d=k={d} B={B} ({'loss, risk' if metrics == 'lite' else 'every metric'}): "
          f"{ms:.1f} ms [{', '.join(f'{x:.1f}' for x in times)}] = "
          f"{B * steps / ms / 1e3:.2f} M traj-steps/s, "
          f"{flops / ms / 1e9:.2f} TFLOP/s (median final risk {risk_end:.3e}"
          + (f", sin θ_A {extra['median_final_sin_a']:.3e})" if extra else ")"), flush=True)


if __name__ == "__main__":
    dump = sys.argv[1]
    # BATCHED_DIMS=100,400 restricts the sizes (as gpu-bench reads it)
    for d in [int(x) for x in os.environ.get("BATCHED_DIMS", "100,400,1000").split(",")]:
        if os.path.exists(os.path.join(dump, f"b{d}_g.f32")):
            run(dump, d, 1024)
            if d <= 400:
                run(dump, d, 1024, metrics="all")
