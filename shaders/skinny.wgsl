// Products with one skinny operand (at most 8 of its columns per dispatch z-slice), all views
// strided so that transposes cost nothing:
//   tall_skinny:  out(i, c) = alpha * sum_l Big(i, l) Sk(l, c)             (reduction inside a workgroup)
//   skinny_t_big: part[seg][c][j] = sum_{i in seg} Sk(i, c) Big(i, j)      (reduction across workgroups)
//   reduce_segments: out(c, j) = alpha * sum_seg part[seg][c][j] + beta * out(c, j)
//   apply_small:  out(i, c) = sum_b In(i, b) M(b, c)                       (tall times small square)
// Views: X(i, j) = x[off + i*s0 + j*s1]. Column block of the skinny operand: cb = wid.z * 8.

struct SkParams {
    m: u32, kdim: u32, ncols: u32, nbig: u32,
    big_off: u32, big_s0: u32, big_s1: u32, sk_off: u32,
    sk_s0: u32, sk_s1: u32, out_off: u32, out_s0: u32,
    out_s1: u32, seg_rows: u32, nseg: u32, gridx: u32,
    alpha: f32, beta: f32, kdim_sk: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: SkParams;
@group(0) @binding(1) var<storage, read> big: array<f32>;
@group(0) @binding(2) var<storage, read> sk: array<f32>;
@group(0) @binding(3) var<storage, read_write> outb: array<f32>;

@group(0) @binding(4) var<storage, read> big4: array<vec4<f32>>;

// Staging of the skinny operand (8 columns as 2 vec4 per row) and the reductions: 16 KiB.
var<workgroup> sh: array<vec4<f32>, 1024>;

fn sk_at(l: u32, c: u32) -> f32 {
    if (l < p.kdim_sk && c < p.ncols) { return sk[p.sk_off + l * p.sk_s0 + c * p.sk_s1]; }
    return 0.0;
}

// Stage Sk rows l0 .. l0+nrows (nrows ≤ 512), columns cb .. cb+8, into sh[2*(l-l0) + c/4][c%4].
fn stage_sk(t: u32, l0: u32, nrows: u32, cb: u32) {
    let total = nrows * 8u;
    for (var e = t; e < total; e += 256u) {
        var ll: u32;
        var c: u32;
        if (p.sk_s0 == 1u) { ll = e % nrows; c = e / nrows; } else { ll = e / 8u; c = e % 8u; }
        sh[2u * ll + c / 4u][c % 4u] = sk_at(l0 + ll, cb + c);
    }
}

fn big_vec_ok() -> bool {
    return p.big_s1 == 1u && (p.big_s0 % 4u) == 0u && (p.big_off % 4u) == 0u;
}

// Big(row, l .. l+3) with zeros past kdim (columns along the reduction).
fn big_quad_row(rbase: u32, l: u32, vec_ok: bool) -> vec4<f32> {
    if (vec_ok && l + 3u < p.kdim) { return big4[(rbase + l) / 4u]; }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (l + q < p.kdim) { v[q] = big[rbase + (l + q) * p.big_s1]; }
    }
    return v;
}

// 8 rows x 32 lanes per workgroup; the reduction dimension is walked in chunks of 256 with the
// chunk of Sk staged in workgroup memory and two vec4 loads of Big in flight per thread.
// m rows of Big (and out), kdim = reduction length, ncols = columns of Sk.
@compute @workgroup_size(256, 1, 1)
fn tall_skinny(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let blk = wid.y * p.gridx + wid.x;
    let rl = t / 32u;
    let lane = t % 32u;
    let row = blk * 8u + rl;
    let cb = wid.z * 8u;
    let vec_ok = big_vec_ok();
    let rbase = p.big_off + min(row, p.m - 1u) * p.big_s0;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    for (var l0 = 0u; l0 < p.kdim; l0 += 256u) {
        let i0 = lane * 4u;
        let i1 = 128u + lane * 4u;
        let v0 = big_quad_row(rbase, l0 + i0, vec_ok);
        let v1 = big_quad_row(rbase, l0 + i1, vec_ok);
        workgroupBarrier();
        stage_sk(t, l0, 256u, cb);
        workgroupBarrier();
        for (var q = 0u; q < 4u; q++) {
            acc0 = fma(vec4<f32>(v0[q]), sh[2u * (i0 + q)], acc0);
            acc1 = fma(vec4<f32>(v0[q]), sh[2u * (i0 + q) + 1u], acc1);
            acc0 = fma(vec4<f32>(v1[q]), sh[2u * (i1 + q)], acc0);
            acc1 = fma(vec4<f32>(v1[q]), sh[2u * (i1 + q) + 1u], acc1);
        }
    }
    workgroupBarrier();
    sh[2u * t] = acc0;
    sh[2u * t + 1u] = acc1;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (lane < s) {
            sh[2u * t] += sh[2u * (t + s)];
            sh[2u * t + 1u] += sh[2u * (t + s) + 1u];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.m) {
        let a0 = sh[2u * t] * p.alpha;
        let a1 = sh[2u * t + 1u] * p.alpha;
        let obase = p.out_off + row * p.out_s0;
        for (var c = 0u; c < 8u; c++) {
            let cc = cb + c;
            if (cc < p.ncols) {
                var v: f32;
                if (c < 4u) { v = a0[c]; } else { v = a1[c - 4u]; }
                outb[obase + cc * p.out_s1] = v;
            }
        }
    }
}

// Big(i, j .. j+3) with zeros past nbig.
fn big_quad_col(i: u32, j: u32, vec_ok: bool) -> vec4<f32> {
    let base = p.big_off + i * p.big_s0;
    if (vec_ok && j + 3u < p.nbig) { return big4[(base + j) / 4u]; }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (j + q < p.nbig) { v[q] = big[base + (j + q) * p.big_s1]; }
    }
    return v;
}

// 64 column-threads (4 columns each) x 4 row-lanes per workgroup; wid.x = block of 256 columns
// of Big, wid.y = row segment (≤ 512 rows, its Sk rows staged), wid.z = 8-column block of Sk.
// m rows (reduction), nbig = columns of Big, ncols = columns of Sk. part is outb, laid out
// [seg][ncols][nbig].
@compute @workgroup_size(256, 1, 1)
fn skinny_t_big(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let ct = t % 64u;
    let lane = t / 64u;
    let j = wid.x * 256u + ct * 4u;
    let seg = wid.y;
    let cb = wid.z * 8u;
    let i0 = seg * p.seg_rows;
    let i1 = min(i0 + p.seg_rows, p.m);
    let vec_ok = big_vec_ok() && (p.nbig % 4u) == 0u;
    stage_sk(t, i0, i1 - i0, cb);
    workgroupBarrier();
    var a: array<vec4<f32>, 8>;
    for (var c = 0u; c < 8u; c++) { a[c] = vec4<f32>(0.0); }
    if (j < p.nbig) {
        var i = i0 + lane;
        for (; i + 4u < i1; i += 8u) {
            let v0 = big_quad_col(i, j, vec_ok);
            let v1 = big_quad_col(i + 4u, j, vec_ok);
            let s00 = sh[2u * (i - i0)];
            let s01 = sh[2u * (i - i0) + 1u];
            let s10 = sh[2u * (i + 4u - i0)];
            let s11 = sh[2u * (i + 4u - i0) + 1u];
            for (var c = 0u; c < 4u; c++) {
                a[c] = fma(vec4<f32>(s00[c]), v0, a[c]);
                a[c + 4u] = fma(vec4<f32>(s01[c]), v0, a[c + 4u]);
                a[c] = fma(vec4<f32>(s10[c]), v1, a[c]);
                a[c + 4u] = fma(vec4<f32>(s11[c]), v1, a[c + 4u]);
            }
        }
        if (i < i1) {
            let v0 = big_quad_col(i, j, vec_ok);
            let s00 = sh[2u * (i - i0)];
            let s01 = sh[2u * (i - i0) + 1u];
            for (var c = 0u; c < 4u; c++) {
                a[c] = fma(vec4<f32>(s00[c]), v0, a[c]);
                a[c + 4u] = fma(vec4<f32>(s01[c]), v0, a[c + 4u]);
            }
        }
    }
    // reduce the 4 row-lanes, 2 sk-columns per round (sh holds 4 vec4 per column-thread slot)
    for (var rnd = 0u; rnd < 4u; rnd++) {
        workgroupBarrier();
        sh[2u * t] = a[2u * rnd];
        sh[2u * t + 1u] = a[2u * rnd + 1u];
        workgroupBarrier();
        if (lane == 0u && j < p.nbig) {
            var s0 = sh[2u * ct];
            var s1 = sh[2u * ct + 1u];
            for (var q = 1u; q < 4u; q++) {
                s0 += sh[2u * (ct + 64u * q)];
                s1 += sh[2u * (ct + 64u * q) + 1u];
            }
            for (var h = 0u; h < 2u; h++) {
                let cc = cb + 2u * rnd + h;
                if (cc < p.ncols) {
                    var v = s0;
                    if (h == 1u) { v = s1; }
                    let o = (seg * p.ncols + cc) * p.nbig + j;
                    for (var q = 0u; q < 4u; q++) {
                        if (j + q < p.nbig) { outb[o + q] = v[q]; }
                    }
                }
            }
        }
    }
}

// Sum the segments of skinny_t_big: one thread per (c, j). Reads part from `big`.
@compute @workgroup_size(256, 1, 1)
fn reduce_segments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    let total = p.ncols * p.nbig;
    if (idx >= total) { return; }
    let c = idx / p.nbig;
    let j = idx % p.nbig;
    var s = 0.0;
    for (var g = 0u; g < p.nseg; g++) {
        s += big[(g * p.ncols + c) * p.nbig + j];
    }
    let o = p.out_off + c * p.out_s0 + j * p.out_s1;
    var v = p.alpha * s;
    if (p.beta != 0.0) { v += p.beta * outb[o]; }
    outb[o] = v;
}

// out(i, c) = sum_b In(i, b) M(b, c): In is `big` (m x ncols), M is `sk` (ncols x ncols,
// row-major at sk_off). Thread per (i, c).
@compute @workgroup_size(256, 1, 1)
fn apply_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if (idx >= p.m * p.ncols) { return; }
    let i = idx / p.ncols;
    let c = idx % p.ncols;
    var s = 0.0;
    for (var b = 0u; b < p.ncols; b++) {
        s += big[p.big_off + i * p.big_s0 + b * p.big_s1] * sk[p.sk_off + b * p.ncols + c];
    }
    outb[p.out_off + i * p.out_s0 + c * p.out_s1] = s;
}
