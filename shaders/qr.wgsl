// Cholesky-QR re-orthonormalisation for the randomised subspace iteration: given the Gram
// W = YᵀY (l x l, l ≤ 64) of a tall Y, one workgroup computes R with RᵀR = W (upper) and
// writes R^{-1} so that Q = Y R^{-1} (by skinny.wgsl's apply_small) has orthonormal columns.
// Rank deficiency: a column whose pivot falls below tol·W_jj (its component outside the span of
// the earlier columns is negligible in f32), or that is zero or non-finite, is "dead": its
// column of R^{-1} is 0, so Q gets a zero column there and the iteration keeps it zero.
// Applied twice (CholeskyQR2) for orthogonality to f32 precision.

struct QrParams {
    l: u32, src_off: u32, dst_off: u32, scratch_off: u32,
    tol: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: QrParams;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;

var<workgroup> dead: array<u32, 64>;

@compute @workgroup_size(64, 1, 1)
fn chol_inv(@builtin(local_invocation_index) t: u32) {
    let l = p.l;
    let w0 = p.src_off;
    let l0 = p.scratch_off;
    let o0 = p.dst_off;
    if (t == 0u) {
        for (var j = 0u; j < l; j++) {
            let wjj = m[w0 + j * l + j];
            var dj = wjj;
            for (var q = 0u; q < j; q++) {
                let v = m[l0 + j * l + q];
                dj -= v * v;
            }
            let bits = bitcast<u32>(dj) & 0x7f800000u;
            let isdead = !(wjj > 0.0) || !(dj > p.tol * wjj) || bits == 0x7f800000u;
            dead[j] = select(0u, 1u, isdead);
            var ljj = 1.0;
            if (!isdead) { ljj = sqrt(dj); }
            m[l0 + j * l + j] = ljj;
            for (var i = j + 1u; i < l; i++) {
                var s = 0.0;
                if (!isdead) {
                    s = m[w0 + i * l + j];
                    for (var q = 0u; q < j; q++) {
                        s -= m[l0 + i * l + q] * m[l0 + j * l + q];
                    }
                    s = s / ljj;
                }
                m[l0 + i * l + j] = s;
            }
        }
    }
    storageBarrier();
    workgroupBarrier();
    // column c of R^{-1}, R = Lᵀ upper: solve R x = e_c by back substitution
    let c = t;
    if (c < l) {
        for (var ii = 0u; ii < l; ii++) {
            let i = l - 1u - ii;
            var x = 0.0;
            if (i <= c && dead[i] == 0u && dead[c] == 0u) {
                var s = select(0.0, 1.0, i == c);
                for (var q = i + 1u; q <= c; q++) {
                    // R[i][q] = L[q][i]
                    s -= m[l0 + q * l + i] * m[o0 + q * l + c];
                }
                x = s / m[l0 + i * l + i];
            }
            m[o0 + i * l + c] = x;
        }
    }
}
