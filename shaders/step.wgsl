// One optimiser step of a LoRA run, split in two kernels around the gradient products.
//
// Tall workspace T (d x 3r, row stride 3r): columns [0, r) = S A (Σ̂A), [r, 2r) = A,
// [2r, 3r) = G_eff Bᵀ (factored form) or -∇_A (residual form).
// rk (r x k): Aᵀ G_eff (factored) or -∇_B (residual). B: r x k.
// small (r x r blocks, r ≤ 32, row-major): [AᵀSA | AᵀA | AᵀGBᵀ] as r x 3r at 0, then BBᵀ at 3r²,
// M_A = (BBᵀ + λI)^{-1} at 4r², M_B = (AᵀA + λI)^{-1} at 5r² (identity for plain GD),
// K_A = BBᵀ M_A at 6r², K_B = M_B AᵀSA at 7r² (zero in residual form).
//
// Then ∇_A M_A = SA K_A - GBᵀ M_A and M_B ∇_B = K_B B - M_B AᵀG, so that
//   update_ab: A <- A - η (SA K_A - GBᵀ M_A),  B <- B - η (K_B B - M_B AᵀG)
// covers GD and preconditioned GD, factored and residual forms.
// small_step (one workgroup) computes the loss, checks finiteness, builds M_A, M_B, K_A, K_B by
// a parallel Cholesky in workgroup memory, and appends (loss, flags) to hist at state[0]. flags: bit 0 = non-finite A or B,
// bit 1 = a preconditioner is not SPD. state[1] != 0 once diverged (updates then stop).

struct StParams {
    d: u32, k: u32, r: u32, mode: u32,
    precond: u32, nparts: u32, gram_nseg: u32, _p1: u32,
    eta: f32, damping: f32, c: f32, limit: f32,
    loss_scale: f32, _p2: u32, _p3: u32, _p4: u32,
}

@group(0) @binding(0) var<uniform> p: StParams;
@group(0) @binding(1) var<storage, read_write> small: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;

@group(1) @binding(0) var<storage, read_write> tws: array<f32>;
@group(1) @binding(1) var<storage, read_write> bmat: array<f32>;
@group(1) @binding(2) var<storage, read> rk: array<f32>;
@group(1) @binding(3) var<storage, read_write> abuf: array<f32>;

@group(2) @binding(0) var<storage, read_write> hist: array<f32>;
@group(2) @binding(1) var<storage, read> lossparts: array<f32>;
// segment partials of Aᵀ[SA | A | GBᵀ] ([seg][r][3r]), summed here into small[0 .. 3r²)
@group(2) @binding(2) var<storage, read> gramparts: array<f32>;

const NT: u32 = 128u;
// r ≤ 32: r×r work arrays in workgroup memory (3 × 4 KiB)
var<workgroup> red: array<f32, 128>;
var<workgroup> wa: array<f32, 1024>;
var<workgroup> wb: array<f32, 1024>;
var<workgroup> winv: array<f32, 1024>;
var<workgroup> bad_pivot: u32;

fn nonfinite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// In-place right-looking Cholesky of the r×r matrix in `wa` (lower triangle = L), all threads.
fn chol_wa(t: u32) {
    let r = p.r;
    for (var j = 0u; j < r; j++) {
        if (t == 0u) {
            var dj = wa[j * r + j];
            if (!(dj > 0.0) || nonfinite(dj)) { bad_pivot = 1u; dj = 1.0; }
            wa[j * r + j] = sqrt(dj);
        }
        workgroupBarrier();
        let ljj = wa[j * r + j];
        for (var i = j + 1u + t; i < r; i += NT) { wa[i * r + j] = wa[i * r + j] / ljj; }
        workgroupBarrier();
        let n = r - j - 1u;
        for (var e = t; e < n * n; e += NT) {
            let i = j + 1u + e / n;
            let c = j + 1u + e % n;
            if (c <= i) { wa[i * r + c] -= wa[i * r + j] * wa[c * r + j]; }
        }
        workgroupBarrier();
    }
}

// (L Lᵀ)^{-1} = L^{-T} L^{-1} for L in `wa`, written to small[dst..] (all threads).
fn spd_inverse_from_wa(t: u32, dst: u32) {
    let r = p.r;
    // column c of L^{-1} by forward substitution (thread c)
    if (t < r) {
        let c = t;
        for (var i = 0u; i < r; i++) {
            var x = 0.0;
            if (i >= c) {
                var s = select(0.0, 1.0, i == c);
                for (var q = c; q < i; q++) { s -= wa[i * r + q] * winv[q * r + c]; }
                x = s / wa[i * r + i];
            }
            winv[i * r + c] = x;
        }
    }
    workgroupBarrier();
    for (var e = t; e < r * r; e += NT) {
        let a = e / r;
        let b = e % r;
        var s = 0.0;
        for (var q = max(a, b); q < r; q++) { s += winv[q * r + a] * winv[q * r + b]; }
        small[dst + e] = s;
    }
    workgroupBarrier();
}

@compute @workgroup_size(128, 1, 1)
fn small_step(@builtin(local_invocation_index) t: u32) {
    let r = p.r;
    let r2 = r * r;
    let w = 3u * r;
    for (var e = t; e < r * w; e += NT) {
        var acc = 0.0;
        for (var g = 0u; g < p.gram_nseg; g++) { acc += gramparts[g * r * w + e]; }
        small[e] = acc;
    }
    storageBarrier();
    workgroupBarrier();
    // loss
    var part = 0.0;
    if (p.mode == 0u) {
        for (var e = t; e < r2; e += NT) {
            let a = e / r;
            let b = e % r;
            part += 0.5 * small[a * w + b] * small[3u * r2 + b * r + a];
            if (a == b) { part -= small[a * w + 2u * r + a]; }
        }
    } else {
        for (var e = t; e < p.nparts; e += NT) {
            part += lossparts[e];
        }
    }
    red[t] = part;
    if (t == 0u) { bad_pivot = 0u; }
    workgroupBarrier();
    for (var s = NT / 2u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    var loss: f32;
    if (p.mode == 0u) { loss = red[0] + p.c; } else { loss = red[0] * p.loss_scale; }
    // preconditioners M_A = (BBᵀ + λI)^{-1}, M_B = (AᵀA + λI)^{-1}, or identities
    if (p.precond != 0u) {
        for (var e = t; e < r2; e += NT) {
            wa[e] = small[3u * r2 + e] + select(0.0, p.damping, e / r == e % r);
        }
        workgroupBarrier();
        chol_wa(t);
        spd_inverse_from_wa(t, 4u * r2);
        for (var e = t; e < r2; e += NT) {
            wa[e] = small[(e / r) * w + r + e % r] + select(0.0, p.damping, e / r == e % r);
        }
        workgroupBarrier();
        chol_wa(t);
        spd_inverse_from_wa(t, 5u * r2);
    } else {
        for (var e = t; e < r2; e += NT) {
            let v = select(0.0, 1.0, e / r == e % r);
            small[4u * r2 + e] = v;
            small[5u * r2 + e] = v;
        }
    }
    storageBarrier();
    workgroupBarrier();
    // K_A = BBᵀ M_A, K_B = M_B AᵀSA (factored form only)
    for (var e = t; e < r2; e += NT) {
        let a = e / r;
        let b = e % r;
        var ka = 0.0;
        var kb = 0.0;
        if (p.mode == 0u) {
            for (var q = 0u; q < r; q++) {
                ka += small[3u * r2 + a * r + q] * small[4u * r2 + q * r + b];
                kb += small[5u * r2 + a * r + q] * small[q * w + b];
            }
        }
        small[6u * r2 + e] = ka;
        small[7u * r2 + e] = kb;
    }
    if (t == 0u) {
        var flags = 0.0;
        var bad = nonfinite(loss);
        for (var a = 0u; a < r; a++) {
            if (nonfinite(small[a * w + r + a]) || nonfinite(small[3u * r2 + a * r + a])) { bad = true; }
        }
        if (bad) { flags += 1.0; }
        if (bad_pivot != 0u) { flags += 2.0; }
        let s = state[0];
        hist[2u * s] = loss;
        hist[2u * s + 1u] = flags;
        state[0] = s + 1u;
        if (bad || loss > p.limit || flags >= 2.0) { state[1] = 1u; }
    }
}

// One dispatch updates both factors (simultaneous updates: each reads only the previous
// evaluation's products). Workgroups [0, na) take A, the rest B.
//   A(i, c) -= η (SA K_A - GBᵀ M_A)(i, c): thread per (i, c). A lives in T's middle columns and,
//     contiguous (d x r), in abuf; both are written.
//   B(:, j) -= η (K_B B - M_B AᵀG)(:, j): thread per column j (r ≤ 32).
// The r×r factors are staged in workgroup memory.
@compute @workgroup_size(256, 1, 1)
fn update_ab(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = p.r;
    let r2 = r * r;
    let wg = wid.y * nwg.x + wid.x;
    let na = (p.d * r + 255u) / 256u;
    let is_a = wg < na;
    for (var e = t; e < r2; e += 256u) {
        if (is_a) {
            wa[e] = small[6u * r2 + e];
            wb[e] = small[4u * r2 + e];
        } else {
            wa[e] = small[7u * r2 + e];
            wb[e] = small[5u * r2 + e];
        }
    }
    workgroupBarrier();
    if (state[1] != 0u) { return; }
    if (is_a) {
        let idx = wg * 256u + t;
        if (idx >= p.d * r) { return; }
        let i = idx / r;
        let c = idx % r;
        let row = i * 3u * r;
        var s = 0.0;
        for (var q = 0u; q < r; q++) {
            s += tws[row + q] * wa[q * r + c] - tws[row + 2u * r + q] * wb[q * r + c];
        }
        let anew = tws[row + r + c] - p.eta * s;
        tws[row + r + c] = anew;
        abuf[i * r + c] = anew;
    } else {
        let j = (wg - na) * 256u + t;
        if (j >= p.k) { return; }
        var col: array<f32, 32>;
        var g: array<f32, 32>;
        for (var c = 0u; c < r; c++) {
            col[c] = bmat[c * p.k + j];
            g[c] = rk[c * p.k + j];
        }
        for (var c = 0u; c < r; c++) {
            var s = 0.0;
            for (var q = 0u; q < r; q++) {
                s += wa[c * r + q] * col[q] - wb[c * r + q] * g[q];
            }
            bmat[c * p.k + j] = col[c] - p.eta * s;
        }
    }
}
