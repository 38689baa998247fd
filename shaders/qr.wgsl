// Cholesky-QR re-orthonormalisation for the randomised subspace iteration: given the Gram
// W = YᵀY (l x l, l ≤ 32) of a tall Y, one workgroup computes W = L Lᵀ (parallel right-looking
// Cholesky in workgroup memory) and writes R^{-1} = L^{-T} so that Q = Y R^{-1} (skinny.wgsl's
// apply_small) has orthonormal columns.
// Rank deficiency: a column whose pivot falls below tol·W_jj (its component outside the span of
// the earlier columns is negligible in f32), or that is zero or non-finite, is "dead": its
// column of R^{-1} and its row are 0, so Q gets a zero column there and the iteration keeps it
// zero. Applied twice (CholeskyQR2) for orthogonality to f32 precision.

struct QrParams {
    l: u32, src_off: u32, dst_off: u32, scratch_off: u32,
    tol: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: QrParams;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;

const NT: u32 = 128u;
var<workgroup> wl: array<f32, 1024>;
var<workgroup> winv: array<f32, 1024>;
var<workgroup> diag0: array<f32, 32>;
var<workgroup> dead: array<u32, 32>;

@compute @workgroup_size(128, 1, 1)
fn chol_inv(@builtin(local_invocation_index) t: u32) {
    let l = p.l;
    for (var e = t; e < l * l; e += NT) {
        let v = m[p.src_off + e];
        wl[e] = v;
        if (e / l == e % l) { diag0[e / l] = v; }
    }
    workgroupBarrier();
    for (var j = 0u; j < l; j++) {
        if (t == 0u) {
            let w0 = diag0[j];
            let dj = wl[j * l + j];
            let bits = bitcast<u32>(dj) & 0x7f800000u;
            let isdead = !(w0 > 0.0) || !(dj > p.tol * w0) || bits == 0x7f800000u;
            dead[j] = select(0u, 1u, isdead);
            wl[j * l + j] = select(sqrt(max(dj, 0.0)), 1.0, isdead);
        }
        workgroupBarrier();
        let ljj = wl[j * l + j];
        let dj = dead[j];
        for (var i = j + 1u + t; i < l; i += NT) {
            wl[i * l + j] = select(wl[i * l + j] / ljj, 0.0, dj != 0u);
        }
        workgroupBarrier();
        let n = l - j - 1u;
        for (var e = t; e < n * n; e += NT) {
            let i = j + 1u + e / n;
            let c = j + 1u + e % n;
            if (c <= i) { wl[i * l + c] -= wl[i * l + j] * wl[c * l + j]; }
        }
        workgroupBarrier();
    }
    // column c of L^{-1} (thread c), dead rows and columns zero
    if (t < l) {
        let c = t;
        for (var i = 0u; i < l; i++) {
            var x = 0.0;
            if (i >= c && dead[i] == 0u && dead[c] == 0u) {
                var s = select(0.0, 1.0, i == c);
                for (var q = c; q < i; q++) { s -= wl[i * l + q] * winv[q * l + c]; }
                x = s / wl[i * l + i];
            }
            winv[i * l + c] = x;
        }
    }
    workgroupBarrier();
    // R^{-1}[i][c] = L^{-1}[c][i]
    for (var e = t; e < l * l; e += NT) {
        let i = e / l;
        let c = e % l;
        m[p.dst_off + e] = winv[c * l + i];
    }
}
