// Batched small-problem path: many LoRA trajectories and many optimiser steps in one dispatch.
//
// Linear model, factored form (SPEC §1): per trajectory with factors A (d×r), B (r×k),
//   SA = Σ̂A,  GBᵀ = G_eff Bᵀ,  (AᵀG_eff)ᵀ,  P = AᵀSA,  Q = BBᵀ,
//   ∇_A = SA·Q − G_eff Bᵀ,  ∇_B = P·B − AᵀG_eff,  L = ½tr(PQ) − tr(AᵀG_eff Bᵀ) + c.
// An offset init (LoRA-GA) has G_eff = G + Σ̂A0B0: its terms come from SA0 = Σ̂A0 (uploaded once)
// and the r×r Grams E = B0Bᵀ and F = AᵀSA0 (so G_eff is never formed).
//
// One workgroup owns T trajectories ("a pack") for the whole dispatch and loops over the steps
// with workgroup barriers only. The T trajectories' factors sit side by side as one combined
// matrix: Ac (d×CP) = [A_1 … A_T], Bc (k×CP) = [B_1ᵀ … B_Tᵀ] (CP = T·r padded to a multiple of 16
// with zero columns), so the three big products are  M(j, i) · Comb(j, c)  with M ∈ {Σ̂, Gᵀ, G}:
// each element of Σ̂ or G, read once (coalesced over i), feeds 8 columns of the pack.
// The pack's state and scratch live in storage (`st`, one region per workgroup, in L1/L2 on a
// GPU); the r×r matrices live in workgroup memory.
//
// Per trajectory (rp, 8 floats): [η, λ, c, limit, status, status step, offset, loss].
// status: 0 running, 1 loss above limit, 2 non-finite, 3 singular preconditioner. A trajectory
// that stops keeps its factors; the others go on. Records (rec) at recorded steps: per
// trajectory RS floats [loss, risk, ‖AB − Δ‖_F, AᵀA (r²), BBᵀ (r²), RᵀR (r²), SᵀS (r²)
// (+ A (d×r) and B (r×k) row-major when `full`)], R = (I − UUᵀ)A, S = (I − VVᵀ)Bᵀ with U, V
// G's top-r* singular bases.
//
// The CPU twin is `CpuBackend` (f64), which advances the same batch run by run.

struct Params {
    d: u32, k: u32, r: u32, rs: u32,
    t: u32, tr: u32, cp: u32, nb: u32,
    nsteps: u32, step0: u32, rec_every: u32, last_step: u32,
    first_new: u32, precond: u32, full: u32, ws: u32,
    o_sig: u32, o_g: u32, o_gt: u32, o_del: u32,
    o_u: u32, o_v: u32, oa: u32, ob: u32,
    oa0: u32, ob0: u32, osa0: u32, osa: u32,
    ogb: u32, oag: u32, oma: u32, omb: u32,
    oe: u32, of_: u32, rstride: u32, any_offset: u32,
    pack0: u32, _p1: u32, _p2: u32, _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Σ̂ (d×d), G (d×k), Gᵀ (k×d), Δ (d×k), U (d×r*), V (k×r*), row-major, at p.o_*.
@group(0) @binding(1) var<storage, read> big: array<f32>;
// per pack: p.ws floats at pack·ws (vec4 units below)
@group(0) @binding(2) var<storage, read_write> st: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> rp: array<f32>;
@group(0) @binding(4) var<storage, read_write> rec: array<f32>;

const WG: u32 = 256u;
const MAXT: u32 = 16u;

var<workgroup> wp: array<f32, 1024>;   // P per trajectory (t·r² + a·r + b)
var<workgroup> wq: array<f32, 1024>;   // Q, then (Q + λI)^-1
var<workgroup> wk: array<f32, 1024>;   // AᵀA, then (AᵀA + λI)^-1
var<workgroup> wd: array<f32, 32>;     // tr parts: Σ_l (AᵀG_eff)ᵀ(l, c) Bc(l, c)
var<workgroup> red: array<f32, 256>;
var<workgroup> wl: array<f32, 16>;     // loss
var<workgroup> wrisk: array<f32, 32>;  // risk, ‖AB − Δ‖²
var<workgroup> alive: array<u32, 16>;
var<workgroup> sing: array<u32, 16>;

fn nonfinite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

fn ld(i: u32) -> f32 {
    return st[i >> 2u][i & 3u];
}

fn sto(i: u32, v: f32) {
    st[i >> 2u][i & 3u] = v;
}

fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// out(row, c) = Σ_j M(j, row) · X(j, c) for the three products, 8 columns (2 vec4) per task.
fn products(tid: u32, base: u32) {
    let cpv = p.cp / 4u;
    let ng = p.cp / 8u;
    let nd = p.d * ng;
    let ntask = 2u * nd + p.k * ng;
    for (var task = tid; task < ntask; task += WG) {
        var which = 0u;
        var rem = task;
        if (rem >= nd) { which = 1u; rem -= nd; }
        if (which == 1u && rem >= nd) { which = 2u; rem -= nd; }
        var rows = p.d;
        var inner = p.d;
        var mo = p.o_sig;
        var xo = p.oa;
        var oo = p.osa;
        if (which == 1u) { inner = p.k; mo = p.o_gt; xo = p.ob; oo = p.ogb; }
        if (which == 2u) { rows = p.k; mo = p.o_g; xo = p.oa; oo = p.oag; }
        let g = rem / rows;
        let row = rem % rows;
        // X rows as vec4 indices: (base + xo)/4 + j·cpv + 2g
        let xv = (base + xo) / 4u + 2u * g;
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        for (var j = 0u; j < inner; j++) {
            let m = big[mo + j * rows + row];
            let xi = xv + j * cpv;
            acc0 += m * st[xi];
            acc1 += m * st[xi + 1u];
        }
        let ov = (base + oo) / 4u + row * cpv + 2u * g;
        st[ov] = acc0;
        st[ov + 1u] = acc1;
    }
}

// Block-diagonal 4×4 tiles of XᵀY (X, Y: n×CP at offsets xo, yo) into a workgroup r×r array.
// Returns nothing; `dst` 0 = wp, 1 = wq, 2 = wk, 3 = E (storage), 4 = F (storage).
fn gram_tile(tile: u32, n: u32, base: u32, xo: u32, yo: u32, dst: u32) {
    let cpv = p.cp / 4u;
    let tx = tile / cpv;
    let ty = tile % cpv;
    let r = p.r;
    // skip tiles that meet no trajectory's diagonal block
    let c0 = tx * 4u;
    let d0 = ty * 4u;
    if (c0 >= p.tr || d0 >= p.tr) { return; }
    if ((c0 + 3u) / r < d0 / r || (d0 + 3u) / r < c0 / r) { return; }
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let xv = (base + xo) / 4u + tx;
    let yv = (base + yo) / 4u + ty;
    for (var i = 0u; i < n; i++) {
        let x = st[xv + i * cpv];
        let y = st[yv + i * cpv];
        a0 += x.x * y;
        a1 += x.y * y;
        a2 += x.z * y;
        a3 += x.w * y;
    }
    for (var u = 0u; u < 4u; u++) {
        var row = a0;
        if (u == 1u) { row = a1; }
        if (u == 2u) { row = a2; }
        if (u == 3u) { row = a3; }
        let c = c0 + u;
        for (var v = 0u; v < 4u; v++) {
            let e = d0 + v;
            if (c < p.tr && e < p.tr && c / r == e / r) {
                let t = c / r;
                let idx = t * r * r + (c % r) * r + (e % r);
                let val = row[v];
                switch dst {
                    case 0u: { wp[idx] = val; }
                    case 1u: { wq[idx] = val; }
                    case 2u: { wk[idx] = val; }
                    case 3u: { sto(base + p.oe + idx, val); }
                    default: { sto(base + p.of_ + idx, val); }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn batched(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let pack = wid.x;
    let base = pack * p.ws;
    let r = p.r;
    let rr = r * r;
    let tcount = p.t;
    let cpv = p.cp / 4u;
    let tiles = cpv * cpv;
    if (tid < MAXT) {
        let g = (p.pack0 + pack) * tcount + tid;
        var ok = 0u;
        if (tid < tcount && g < p.nb) {
            if (rp[g * 8u + 4u] == 0.0) { ok = 1u; }
        }
        alive[tid] = ok;
        sing[tid] = 0u;
    }
    sync();
    var nrec = 0u;
    for (var it = 0u; it <= p.nsteps; it++) {
        let step = p.step0 + it;
        let check = it > 0u || p.first_new == 1u;
        let recd = check && (step % p.rec_every == 0u || step == p.last_step);
        products(tid, base);
        sync();
        if (p.any_offset == 1u) {
            // E = B0Bᵀ (k), F = AᵀSA0 (d); then G_eff corrections of GBᵀ and (AᵀG)ᵀ.
            for (var e = tid; e < 2u * tiles; e += WG) {
                if (e < tiles) {
                    gram_tile(e, p.k, base, p.ob0, p.ob, 3u);
                } else {
                    gram_tile(e - tiles, p.d, base, p.oa, p.osa0, 4u);
                }
            }
            sync();
            for (var e = tid; e < (p.d + p.k) * p.tr; e += WG) {
                var row = e / p.tr;
                let c = e % p.tr;
                let t = c / r;
                let b = c % r;
                var s = 0.0;
                if (row < p.d) {
                    for (var a = 0u; a < r; a++) {
                        s += ld(base + p.osa0 + row * p.cp + t * r + a) * ld(base + p.oe + t * rr + a * r + b);
                    }
                    let o = base + p.ogb + row * p.cp + c;
                    sto(o, ld(o) + s);
                } else {
                    row -= p.d;
                    for (var a = 0u; a < r; a++) {
                        s += ld(base + p.ob0 + row * p.cp + t * r + a) * ld(base + p.of_ + t * rr + b * r + a);
                    }
                    let o = base + p.oag + row * p.cp + c;
                    sto(o, ld(o) + s);
                }
            }
            sync();
        }
        // P = AᵀSA, Q = BBᵀ, AᵀA (when needed), and the trace parts.
        let need_k = p.precond == 1u || recd;
        var ngram = 2u * tiles;
        if (need_k) { ngram = 3u * tiles; }
        for (var e = tid; e < ngram + cpv; e += WG) {
            if (e < tiles) {
                gram_tile(e, p.d, base, p.oa, p.osa, 0u);
            } else if (e < 2u * tiles) {
                gram_tile(e - tiles, p.k, base, p.ob, p.ob, 1u);
            } else if (e < ngram) {
                gram_tile(e - 2u * tiles, p.d, base, p.oa, p.oa, 2u);
            } else {
                let cv = e - ngram;
                var acc = vec4<f32>(0.0);
                let gv = (base + p.oag) / 4u + cv;
                let bv = (base + p.ob) / 4u + cv;
                for (var l = 0u; l < p.k; l++) {
                    acc += st[gv + l * cpv] * st[bv + l * cpv];
                }
                for (var u = 0u; u < 4u; u++) {
                    let c = cv * 4u + u;
                    if (c < p.tr) { wd[c] = acc[u]; }
                }
            }
        }
        workgroupBarrier();
        if (tid < tcount) {
            let g = (p.pack0 + pack) * tcount + tid;
            var pq = 0.0;
            for (var a = 0u; a < r; a++) {
                for (var b = 0u; b < r; b++) {
                    pq += wp[tid * rr + a * r + b] * wq[tid * rr + b * r + a];
                }
            }
            var trace = 0.0;
            for (var q = 0u; q < r; q++) { trace += wd[tid * r + q]; }
            if (g < p.nb) {
                let loss = 0.5 * pq - trace + rp[g * 8u + 2u];
                wl[tid] = loss;
                if (check && alive[tid] == 1u) {
                    if (nonfinite(loss)) {
                        alive[tid] = 0u;
                        rp[g * 8u + 4u] = 2.0;
                        rp[g * 8u + 5u] = f32(step);
                    } else if (loss > rp[g * 8u + 3u]) {
                        alive[tid] = 0u;
                        rp[g * 8u + 4u] = 1.0;
                        rp[g * 8u + 5u] = f32(step);
                    }
                }
                rp[g * 8u + 7u] = loss;
            }
        }
        sync();
        if (recd) {
            record(tid, pack, base, nrec);
            nrec += 1u;
        }
        if (it == p.nsteps) { break; }
        // gradients: ∇_A into GBᵀ's place, ∇_B (as Bc layout) into (AᵀG)ᵀ's place
        for (var e = tid; e < (p.d + p.k) * p.tr; e += WG) {
            var row = e / p.tr;
            let c = e % p.tr;
            let t = c / r;
            let b = c % r;
            var s = 0.0;
            if (row < p.d) {
                for (var a = 0u; a < r; a++) {
                    s += ld(base + p.osa + row * p.cp + t * r + a) * wq[t * rr + a * r + b];
                }
                let o = base + p.ogb + row * p.cp + c;
                sto(o, s - ld(o));
            } else {
                row -= p.d;
                for (var a = 0u; a < r; a++) {
                    s += ld(base + p.ob + row * p.cp + t * r + a) * wp[t * rr + b * r + a];
                }
                let o = base + p.oag + row * p.cp + c;
                sto(o, s - ld(o));
            }
        }
        sync();
        if (p.precond == 1u) {
            // (Q + λI)^-1 and (AᵀA + λI)^-1 by Gauss–Jordan in place, one thread per row.
            let nrow = 2u * p.tr;
            let mine = tid < nrow;
            var which = 0u;
            var t = 0u;
            var row = 0u;
            if (mine) {
                which = tid / p.tr;
                t = (tid % p.tr) / r;
                row = tid % r;
                let g = (p.pack0 + pack) * tcount + t;
                let lam = rp[g * 8u + 1u];
                if (which == 0u) { wq[t * rr + row * r + row] += lam; } else { wk[t * rr + row * r + row] += lam; }
            }
            workgroupBarrier();
            for (var pv = 0u; pv < r; pv++) {
                if (mine) {
                    let o = t * rr;
                    var piv = 0.0;
                    if (which == 0u) { piv = wq[o + pv * r + pv]; } else { piv = wk[o + pv * r + pv]; }
                    if (!(piv > 0.0) || nonfinite(piv)) {
                        sing[t] = 1u;
                        piv = 1.0;
                    }
                    if (row != pv) {
                        if (which == 0u) {
                            let f = wq[o + row * r + pv];
                            for (var j = 0u; j < r; j++) {
                                if (j != pv) { wq[o + row * r + j] -= f * wq[o + pv * r + j] / piv; }
                            }
                            wq[o + row * r + pv] = -f / piv;
                        } else {
                            let f = wk[o + row * r + pv];
                            for (var j = 0u; j < r; j++) {
                                if (j != pv) { wk[o + row * r + j] -= f * wk[o + pv * r + j] / piv; }
                            }
                            wk[o + row * r + pv] = -f / piv;
                        }
                    }
                }
                workgroupBarrier();
                if (mine && row == pv) {
                    let o = t * rr;
                    if (which == 0u) {
                        var piv = wq[o + pv * r + pv];
                        if (!(piv > 0.0) || nonfinite(piv)) { piv = 1.0; }
                        for (var j = 0u; j < r; j++) {
                            if (j != pv) { wq[o + pv * r + j] /= piv; }
                        }
                        wq[o + pv * r + pv] = 1.0 / piv;
                    } else {
                        var piv = wk[o + pv * r + pv];
                        if (!(piv > 0.0) || nonfinite(piv)) { piv = 1.0; }
                        for (var j = 0u; j < r; j++) {
                            if (j != pv) { wk[o + pv * r + j] /= piv; }
                        }
                        wk[o + pv * r + pv] = 1.0 / piv;
                    }
                }
                workgroupBarrier();
            }
            if (tid < tcount) {
                let g = (p.pack0 + pack) * tcount + tid;
                if (sing[tid] == 1u && alive[tid] == 1u && g < p.nb) {
                    alive[tid] = 0u;
                    rp[g * 8u + 4u] = 3.0;
                    rp[g * 8u + 5u] = f32(step + 1u);
                }
            }
            workgroupBarrier();
        }
        // updates
        for (var e = tid; e < (p.d + p.k) * p.tr; e += WG) {
            var row = e / p.tr;
            let c = e % p.tr;
            let t = c / r;
            let b = c % r;
            if (alive[t] == 0u) { continue; }
            let g = (p.pack0 + pack) * tcount + t;
            let eta = rp[g * 8u];
            if (row < p.d) {
                var s = 0.0;
                let go = base + p.ogb + row * p.cp + t * r;
                if (p.precond == 1u) {
                    for (var a = 0u; a < r; a++) { s += ld(go + a) * wq[t * rr + a * r + b]; }
                } else {
                    s = ld(go + b);
                }
                let o = base + p.oa + row * p.cp + c;
                sto(o, ld(o) - eta * s);
            } else {
                row -= p.d;
                var s = 0.0;
                let go = base + p.oag + row * p.cp + t * r;
                if (p.precond == 1u) {
                    for (var a = 0u; a < r; a++) { s += wk[t * rr + b * r + a] * ld(go + a); }
                } else {
                    s = ld(go + b);
                }
                let o = base + p.ob + row * p.cp + c;
                sto(o, ld(o) - eta * s);
            }
        }
        sync();
    }
}

// Risk, ‖AB − Δ‖², the residual Grams against U and V, and the record row of every trajectory.
fn record(tid: u32, pack: u32, base: u32, nrec: u32) {
    let r = p.r;
    let rr = r * r;
    let tcount = p.t;
    let cpv = p.cp / 4u;
    // M_A = UᵀA (r*×CP), M_B = VᵀBᵀ (r*×CP)
    for (var e = tid; e < 2u * p.rs * p.tr; e += WG) {
        let which = e / (p.rs * p.tr);
        let q = (e / p.tr) % p.rs;
        let c = e % p.tr;
        var s = 0.0;
        if (which == 0u) {
            for (var i = 0u; i < p.d; i++) { s += big[p.o_u + i * p.rs + q] * ld(base + p.oa + i * p.cp + c); }
            sto(base + p.oma + q * p.cp + c, s);
        } else {
            for (var l = 0u; l < p.k; l++) { s += big[p.o_v + l * p.rs + q] * ld(base + p.ob + l * p.cp + c); }
            sto(base + p.omb + q * p.cp + c, s);
        }
    }
    // risk and error: every thread sums its elements for every trajectory of the pack
    var risk: array<f32, 16>;
    var err: array<f32, 16>;
    for (var t = 0u; t < MAXT; t++) { risk[t] = 0.0; err[t] = 0.0; }
    let n = p.d * p.k;
    for (var e = tid; e < n; e += WG) {
        let i = e / p.k;
        let j = e % p.k;
        let dl = big[p.o_del + e];
        for (var t = 0u; t < tcount; t++) {
            var ab = 0.0;
            var ab0 = 0.0;
            for (var q = 0u; q < r; q++) {
                let c = t * r + q;
                ab += ld(base + p.oa + i * p.cp + c) * ld(base + p.ob + j * p.cp + c);
                if (p.any_offset == 1u) {
                    ab0 += ld(base + p.oa0 + i * p.cp + c) * ld(base + p.ob0 + j * p.cp + c);
                }
            }
            let e1 = ab - dl;
            let e2 = e1 - ab0;
            risk[t] += e2 * e2;
            err[t] += e1 * e1;
        }
    }
    for (var t = 0u; t < tcount; t++) {
        for (var h = 0u; h < 2u; h++) {
            var v = risk[t];
            if (h == 1u) { v = err[t]; }
            red[tid] = v;
            workgroupBarrier();
            for (var s = WG / 2u; s > 0u; s >>= 1u) {
                if (tid < s) { red[tid] += red[tid + s]; }
                workgroupBarrier();
            }
            if (tid == 0u) { wrisk[2u * t + h] = red[0]; }
            workgroupBarrier();
        }
    }
    sync();
    // residual Grams RᵀR, SᵀS: entries (t, a, b), each a sum over rows with the residual formed
    // on the fly: R(i, a) = A(i, a) − Σ_q U(i, q) M_A(q, a)
    for (var e = tid; e < 2u * tcount * rr; e += WG) {
        let which = e / (tcount * rr);
        let t = (e / rr) % tcount;
        let a = (e / r) % r;
        let b = e % r;
        let ca = t * r + a;
        let cb = t * r + b;
        var s = 0.0;
        if (which == 0u) {
            for (var i = 0u; i < p.d; i++) {
                var x = ld(base + p.oa + i * p.cp + ca);
                var y = ld(base + p.oa + i * p.cp + cb);
                for (var q = 0u; q < p.rs; q++) {
                    let u = big[p.o_u + i * p.rs + q];
                    x -= u * ld(base + p.oma + q * p.cp + ca);
                    y -= u * ld(base + p.oma + q * p.cp + cb);
                }
                s += x * y;
            }
        } else {
            for (var l = 0u; l < p.k; l++) {
                var x = ld(base + p.ob + l * p.cp + ca);
                var y = ld(base + p.ob + l * p.cp + cb);
                for (var q = 0u; q < p.rs; q++) {
                    let v = big[p.o_v + l * p.rs + q];
                    x -= v * ld(base + p.omb + q * p.cp + ca);
                    y -= v * ld(base + p.omb + q * p.cp + cb);
                }
                s += x * y;
            }
        }
        let g = (p.pack0 + pack) * tcount + t;
        if (g < p.nb) {
            rec[(nrec * p.nb + g) * p.rstride + 3u + (2u + which) * rr + a * r + b] = s;
        }
    }
    // the rest of the row: loss, risk, error, AᵀA, BBᵀ (and A, B when full)
    for (var e = tid; e < tcount * (3u + 2u * rr); e += WG) {
        let t = e / (3u + 2u * rr);
        let f = e % (3u + 2u * rr);
        let g = (p.pack0 + pack) * tcount + t;
        if (g >= p.nb) { continue; }
        var v = 0.0;
        if (f == 0u) { v = wl[t]; }
        else if (f == 1u) { v = 0.5 * wrisk[2u * t]; }
        else if (f == 2u) { v = sqrt(wrisk[2u * t + 1u]); }
        else if (f < 3u + rr) { v = wk[t * rr + f - 3u]; }
        else { v = wq[t * rr + f - 3u - rr]; }
        rec[(nrec * p.nb + g) * p.rstride + f] = v;
    }
    if (p.full == 1u) {
        let fo = 3u + 4u * rr;
        for (var e = tid; e < tcount * (p.d + p.k) * r; e += WG) {
            let t = e / ((p.d + p.k) * r);
            let f = e % ((p.d + p.k) * r);
            let g = (p.pack0 + pack) * tcount + t;
            if (g >= p.nb) { continue; }
            var v = 0.0;
            if (f < p.d * r) {
                v = ld(base + p.oa + (f / r) * p.cp + t * r + f % r);
            } else {
                let fb = f - p.d * r;
                let q = fb / p.k;
                let l = fb % p.k;
                v = ld(base + p.ob + l * p.cp + t * r + q);
            }
            rec[(nrec * p.nb + g) * p.rstride + fo + f] = v;
        }
    }
    sync();
}
