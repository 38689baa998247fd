// One optimiser step of a LoRA run, split in three kernels around the gradient products.
//
// Tall workspace T (d x 3r, row stride 3r): columns [0, r) = S A (Σ̂A), [r, 2r) = A,
// [2r, 3r) = G_eff Bᵀ (factored form) or -∇_A (residual form).
// rk (r x k): Aᵀ G_eff (factored) or -∇_B (residual). B: r x k.
// small (r x r blocks, row-major): [AᵀSA | AᵀA | AᵀGBᵀ] as r x 3r at 0, then BBᵀ at 3r²,
// M_A = (BBᵀ + λI)^{-1} at 4r², M_B = (AᵀA + λI)^{-1} at 5r² (identity for plain GD),
// K_A = BBᵀ M_A at 6r², K_B = M_B AᵀSA at 7r² (zero in residual form), scratch at 8r².
//
// Then ∇_A M_A = SA K_A - GBᵀ M_A and M_B ∇_B = K_B B - M_B AᵀG, so that
//   update_a: A <- A - η (SA K_A - GBᵀ M_A)
//   update_b: B <- B - η (K_B B - M_B AᵀG)
// covers GD and preconditioned GD, factored and residual forms.
// small_step (one workgroup) computes the loss, checks finiteness, builds M_A, M_B, K_A, K_B by
// Cholesky, and appends (loss, flags) to hist at state[0]. flags: bit 0 = non-finite A or B,
// bit 1 = a preconditioner is not SPD. state[1] != 0 once diverged (updates then stop).

struct StParams {
    d: u32, k: u32, r: u32, mode: u32,
    precond: u32, nparts: u32, _p0: u32, _p1: u32,
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

var<workgroup> red: array<f32, 64>;
var<workgroup> ok: array<u32, 2>;

fn nonfinite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// Cholesky of (small[src..] + λI) into scratch (thread 0); returns via ok[slot].
fn chol(src: u32, src_stride: u32, slot: u32) {
    let r = p.r;
    let l0 = 8u * r * r;
    var good = 1u;
    for (var j = 0u; j < r; j++) {
        var dj = small[src + j * src_stride + j] + p.damping;
        for (var q = 0u; q < j; q++) {
            let v = small[l0 + j * r + q];
            dj -= v * v;
        }
        if (!(dj > 0.0) || nonfinite(dj)) { good = 0u; dj = 1.0; }
        let ljj = sqrt(dj);
        small[l0 + j * r + j] = ljj;
        for (var i = j + 1u; i < r; i++) {
            var s = small[src + i * src_stride + j];
            for (var q = 0u; q < j; q++) {
                s -= small[l0 + i * r + q] * small[l0 + j * r + q];
            }
            small[l0 + i * r + j] = s / ljj;
        }
    }
    ok[slot] = good;
}

// Column c of (L Lᵀ)^{-1} into small[dst..] (thread c).
fn chol_inverse_column(c: u32, dst: u32) {
    let r = p.r;
    let l0 = 8u * r * r;
    // forward: L y = e_c, y stored in column c of dst
    for (var i = 0u; i < r; i++) {
        var s = select(0.0, 1.0, i == c);
        for (var q = 0u; q < i; q++) {
            s -= small[l0 + i * r + q] * small[dst + q * r + c];
        }
        small[dst + i * r + c] = s / small[l0 + i * r + i];
    }
    // backward: Lᵀ x = y
    for (var ii = 0u; ii < r; ii++) {
        let i = r - 1u - ii;
        var s = small[dst + i * r + c];
        for (var q = i + 1u; q < r; q++) {
            s -= small[l0 + q * r + i] * small[dst + q * r + c];
        }
        small[dst + i * r + c] = s / small[l0 + i * r + i];
    }
}

@compute @workgroup_size(64, 1, 1)
fn small_step(@builtin(local_invocation_index) t: u32) {
    let r = p.r;
    let r2 = r * r;
    let w = 3u * r;
    // loss
    var part = 0.0;
    if (p.mode == 0u) {
        for (var e = t; e < r2; e += 64u) {
            let a = e / r;
            let b = e % r;
            part += 0.5 * small[a * w + b] * small[3u * r2 + b * r + a];
            if (a == b) { part -= small[a * w + 2u * r + a]; }
        }
    } else {
        for (var e = t; e < p.nparts; e += 64u) {
            part += lossparts[e];
        }
    }
    red[t] = part;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    var loss: f32;
    if (p.mode == 0u) { loss = red[0] + p.c; } else { loss = red[0] * p.loss_scale; }
    workgroupBarrier();
    // preconditioners
    if (p.precond != 0u) {
        if (t == 0u) { chol(3u * r2, r, 0u); }
        storageBarrier();
        workgroupBarrier();
        if (t < r) { chol_inverse_column(t, 4u * r2); }
        storageBarrier();
        workgroupBarrier();
        if (t == 0u) { chol(r, w, 1u); }
        storageBarrier();
        workgroupBarrier();
        if (t < r) { chol_inverse_column(t, 5u * r2); }
    } else {
        for (var e = t; e < r2; e += 64u) {
            let v = select(0.0, 1.0, e / r == e % r);
            small[4u * r2 + e] = v;
            small[5u * r2 + e] = v;
        }
        if (t == 0u) { ok[0] = 1u; ok[1] = 1u; }
    }
    storageBarrier();
    workgroupBarrier();
    // K_A = BBᵀ M_A, K_B = M_B AᵀSA (factored form only)
    for (var e = t; e < r2; e += 64u) {
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
        if (ok[0] == 0u || ok[1] == 0u) { flags += 2.0; }
        let s = state[0];
        hist[2u * s] = loss;
        hist[2u * s + 1u] = flags;
        state[0] = s + 1u;
        if (bad || loss > p.limit || flags >= 2.0) { state[1] = 1u; }
    }
}

// A(i, c) -= η (SA K_A - GBᵀ M_A)(i, c); thread per (i, c). A lives in T's middle columns and,
// contiguous (d x r), in abuf; both are written.
@compute @workgroup_size(256, 1, 1)
fn update_a(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (state[1] != 0u) { return; }
    let idx = gid.y * nwg.x * 256u + gid.x;
    let r = p.r;
    if (idx >= p.d * r) { return; }
    let i = idx / r;
    let c = idx % r;
    let r2 = r * r;
    let row = i * 3u * r;
    var s = 0.0;
    for (var q = 0u; q < r; q++) {
        s += tws[row + q] * small[6u * r2 + q * r + c] - tws[row + 2u * r + q] * small[4u * r2 + q * r + c];
    }
    let anew = tws[row + r + c] - p.eta * s;
    tws[row + r + c] = anew;
    abuf[i * r + c] = anew;
}

// B(:, j) -= η (K_B B - M_B AᵀG)(:, j); thread per column j (r ≤ 64).
@compute @workgroup_size(256, 1, 1)
fn update_b(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (state[1] != 0u) { return; }
    let j = gid.y * nwg.x * 256u + gid.x;
    if (j >= p.k) { return; }
    let r = p.r;
    let r2 = r * r;
    var col: array<f32, 64>;
    for (var c = 0u; c < r; c++) { col[c] = bmat[c * p.k + j]; }
    for (var c = 0u; c < r; c++) {
        var s = 0.0;
        for (var q = 0u; q < r; q++) {
            s += small[7u * r2 + c * r + q] * col[q] - small[5u * r2 + c * r + q] * rk[q * p.k + j];
        }
        bmat[c * p.k + j] = col[c] - p.eta * s;
    }
}
