#!/usr/bin/env python3
"""PyTorch baselines on the same GPU as the wgpu benchmarks (bench/h200.sh runs both).

Prints one `RESULT {json}` line per measurement:
  bandwidth  device-to-device copy of 1 GiB (the memory ceiling used for floors)
  matmul     cuBLAS SGEMM n^3, TF32 off
  svd        torch.svd_lowrank of the planted G written by `gpu-bench --dump DIR` (time, sin theta)
  step       one GD / preconditioned GD step at d = k = 4096, r = 8: the naive residual form
             X(W0 + AB) - Y with N = 16 d, and the same factored form the WGSL kernels use
Usage: torch_baselines.py DUMP_DIR
"""
import json
import sys
import time

import numpy as np
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device("cuda")


def result(kind, **kw):
    kw = {"bench": kind, "impl": "torch", **kw}
    print("RESULT " + json.dumps(kw), flush=True)


def timed(fn, reps, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return float(np.median(out)), out


def sin_theta(u, q):
    # || Q - U (U^T Q) ||_2 for orthonormal U (n x p), Q (n x q)
    r = q - u @ (u.T @ q)
    return float(torch.linalg.matrix_norm(r.double(), ord=2))


def main():
    dump = sys.argv[1]
    print("torch", torch.__version__, torch.cuda.get_device_name(0), file=sys.stderr)
    # bandwidth
    x = torch.empty(1 << 28, device=dev)
    y = torch.empty_like(x)
    ms, _ = timed(lambda: y.copy_(x), 20)
    bw = 2 * x.numel() * 4 / (ms * 1e-3)
    result("bandwidth", gbps=bw / 1e9, ms=ms)
    del x, y
    # SGEMM
    for n in [1024, 2048, 4096, 8192]:
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        c = torch.empty(n, n, device=dev)
        reps = max(5, min(40, 8192 // n * 5))
        ms, samples = timed(lambda: torch.mm(a, b, out=c), reps)
        result("matmul", n=n, ms=ms, tflops=2 * n**3 / (ms * 1e-3) / 1e12, samples_ms=samples)
        del a, b, c
    # svd_lowrank on the planted G
    d, k = map(int, open(f"{dump}/shape.txt").read().split())
    G = torch.from_numpy(np.fromfile(f"{dump}/G.f32", dtype=np.float32).reshape(d, k)).to(dev)
    U8 = torch.from_numpy(np.fromfile(f"{dump}/U8.f32", dtype=np.float32).reshape(d, 8)).to(dev)
    V8 = torch.from_numpy(np.fromfile(f"{dump}/V8.f32", dtype=np.float32).reshape(k, 8)).to(dev)
    for niter in [0, 1, 2, 3, 4]:
        holder = {}

        def run():
            holder["r"] = torch.svd_lowrank(G, q=16, niter=niter)

        ms, samples = timed(run, 10)
        U, S, V = holder["r"]
        acc = max(sin_theta(U8, U[:, :8]), sin_theta(V8, V[:, :8]))
        result("svd", d=d, k=k, m=8, q=16, iters=niter, ms=ms, sin_theta=acc, samples_ms=samples)
    # one step at d = k = 4096, r = 8
    d = k = 4096
    r, n = 8, 16 * 4096
    lam = 1e-3
    g = torch.Generator(device=dev).manual_seed(0)
    X = torch.randn(n, d, device=dev, generator=g)
    W0 = torch.randn(d, k, device=dev, generator=g)
    Delta = G[:d, :k]
    Y = X @ (W0 + Delta)
    A = torch.randn(d, r, device=dev, generator=g) * 0.1
    B = torch.randn(r, k, device=dev, generator=g) * 0.1
    A0, B0 = A.clone(), B.clone()
    I = torch.eye(r, device=dev)

    def naive(precond):
        # the update is applied with η = 0 (the same work; the unnormalised residual-form
        # gradient at this scale would overflow the factors within a few timed steps)
        eta0 = 0.0

        def f():
            R = X @ (W0 + A @ B) - Y
            gW = X.T @ R / n
            gA = gW @ B.T
            gB = A.T @ gW
            if precond:
                gA = gA @ torch.linalg.inv(B @ B.T + lam * I)
                gB = torch.linalg.inv(A.T @ A + lam * I) @ gB
            A.sub_(eta0 * gA)
            B.sub_(eta0 * gB)
        return f

    for precond in [False, True]:
        ms, samples = timed(naive(precond), 5, warm=1)
        result("step", form="residual (naive)", d=d, k=k, r=r, n=n,
               optimiser="Preconditioned" if precond else "Gd", us_per_step=ms * 1e3, samples_ms=samples)
    del X, Y
    torch.cuda.empty_cache()
    A.copy_(A0)
    B.copy_(B0)
    S = torch.eye(d, device=dev) + 0.01 / d**0.5 * torch.randn(d, d, device=dev, generator=g)
    S = 0.5 * (S + S.T)

    def factored(precond):
        eta0 = 0.0  # same work, state kept fixed (timing only)

        def f():
            SA = S @ A
            BBt = B @ B.T
            gA = SA @ BBt - G @ B.T
            gB = (A.T @ SA) @ B - A.T @ G
            if precond:
                gA = gA @ torch.linalg.inv(BBt + lam * I)
                gB = torch.linalg.inv(A.T @ A + lam * I) @ gB
            A.sub_(eta0 * gA)
            B.sub_(eta0 * gB)
        return f

    for precond in [False, True]:
        ms, samples = timed(factored(precond), 50, warm=5)
        result("step", form="factored", d=d, k=k, r=r,
               optimiser="Preconditioned" if precond else "Gd", us_per_step=ms * 1e3, samples_ms=samples)
    # CUDA-graph version of the factored GD step: launch overhead removed
    try:
        f = factored(False)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                f()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            f()
        ms, samples = timed(graph.replay, 50, warm=5)
        result("step", form="factored (CUDA graph)", d=d, k=k, r=r, optimiser="Gd",
               us_per_step=ms * 1e3, samples_ms=samples)
    except Exception as e:  # noqa: BLE001
        print("cuda graph failed:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
