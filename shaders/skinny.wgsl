// Products with one skinny operand (at most 8 of its columns per dispatch z-slice), all views
// strided so that transposes cost nothing:
//   tall_skinny:  part[kc][c][i] = alpha * sum_{l in chunk kc} Big(i, l) Sk(l, c)   (split-K)
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

// Staging of the skinny operand (8 columns as 2 vec4 per row) and the reductions: 8 KiB.
var<workgroup> sh: array<vec4<f32>, 512>;

fn sk_at(l: u32, c: u32) -> f32 {
    if (l < p.kdim_sk && c < p.ncols) { return sk[p.sk_off + l * p.sk_s0 + c * p.sk_s1]; }
    return 0.0;
}

// Stage Sk rows l0 .. l0+nrows (nrows ≤ 256), columns cb .. cb+8, into sh[2*(l-l0) + c/4][c%4].
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

// Split-K tall-skinny product, partial sums: one thread per row of Big, 256 rows per workgroup
// (wid.x, wid.y folded), wid.z = kchunk * ncb + column block; the chunk's 256 rows of Sk are
// staged in workgroup memory and read as broadcasts; each thread streams its row 32 floats
// (8 vec4 loads in flight, one whole 128-byte line) at a time.
// part (outb) is laid out [kchunk][ncols][m], summed by reduce_segments.
// m rows of Big, kdim = reduction length, ncols = columns of Sk, nseg = number of k-chunks.
@compute @workgroup_size(256, 1, 1)
fn tall_skinny(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let rb = wid.y * p.gridx + wid.x;
    let ncb = (p.ncols + 7u) / 8u;
    let kc = wid.z / ncb;
    let cb = (wid.z % ncb) * 8u;
    let row = rb * 256u + t;
    // k-chunk length in seg_rows (≤ 256, a multiple of 32)
    let l0 = kc * p.seg_rows;
    let nl = min(p.seg_rows, p.kdim - l0);
    stage_sk(t, l0, nl, cb);
    workgroupBarrier();
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    if (row < p.m) {
        let rbase = p.big_off + row * p.big_s0;
        var q = 0u;
        if (big_vec_ok()) {
            let b4 = (rbase + l0) / 4u;
            for (; q + 32u <= nl; q += 32u) {
                let v0 = big4[b4 + q / 4u];
                let v1 = big4[b4 + q / 4u + 1u];
                let v2 = big4[b4 + q / 4u + 2u];
                let v3 = big4[b4 + q / 4u + 3u];
                let v4 = big4[b4 + q / 4u + 4u];
                let v5 = big4[b4 + q / 4u + 5u];
                let v6 = big4[b4 + q / 4u + 6u];
                let v7 = big4[b4 + q / 4u + 7u];
                acc0 = fma(vec4<f32>(v0.x), sh[2u * (q + 0u)], acc0);
                acc1 = fma(vec4<f32>(v0.x), sh[2u * (q + 0u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v0.y), sh[2u * (q + 1u)], acc0);
                acc1 = fma(vec4<f32>(v0.y), sh[2u * (q + 1u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v0.z), sh[2u * (q + 2u)], acc0);
                acc1 = fma(vec4<f32>(v0.z), sh[2u * (q + 2u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v0.w), sh[2u * (q + 3u)], acc0);
                acc1 = fma(vec4<f32>(v0.w), sh[2u * (q + 3u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v1.x), sh[2u * (q + 4u)], acc0);
                acc1 = fma(vec4<f32>(v1.x), sh[2u * (q + 4u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v1.y), sh[2u * (q + 5u)], acc0);
                acc1 = fma(vec4<f32>(v1.y), sh[2u * (q + 5u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v1.z), sh[2u * (q + 6u)], acc0);
                acc1 = fma(vec4<f32>(v1.z), sh[2u * (q + 6u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v1.w), sh[2u * (q + 7u)], acc0);
                acc1 = fma(vec4<f32>(v1.w), sh[2u * (q + 7u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v2.x), sh[2u * (q + 8u)], acc0);
                acc1 = fma(vec4<f32>(v2.x), sh[2u * (q + 8u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v2.y), sh[2u * (q + 9u)], acc0);
                acc1 = fma(vec4<f32>(v2.y), sh[2u * (q + 9u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v2.z), sh[2u * (q + 10u)], acc0);
                acc1 = fma(vec4<f32>(v2.z), sh[2u * (q + 10u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v2.w), sh[2u * (q + 11u)], acc0);
                acc1 = fma(vec4<f32>(v2.w), sh[2u * (q + 11u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v3.x), sh[2u * (q + 12u)], acc0);
                acc1 = fma(vec4<f32>(v3.x), sh[2u * (q + 12u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v3.y), sh[2u * (q + 13u)], acc0);
                acc1 = fma(vec4<f32>(v3.y), sh[2u * (q + 13u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v3.z), sh[2u * (q + 14u)], acc0);
                acc1 = fma(vec4<f32>(v3.z), sh[2u * (q + 14u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v3.w), sh[2u * (q + 15u)], acc0);
                acc1 = fma(vec4<f32>(v3.w), sh[2u * (q + 15u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v4.x), sh[2u * (q + 16u)], acc0);
                acc1 = fma(vec4<f32>(v4.x), sh[2u * (q + 16u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v4.y), sh[2u * (q + 17u)], acc0);
                acc1 = fma(vec4<f32>(v4.y), sh[2u * (q + 17u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v4.z), sh[2u * (q + 18u)], acc0);
                acc1 = fma(vec4<f32>(v4.z), sh[2u * (q + 18u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v4.w), sh[2u * (q + 19u)], acc0);
                acc1 = fma(vec4<f32>(v4.w), sh[2u * (q + 19u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v5.x), sh[2u * (q + 20u)], acc0);
                acc1 = fma(vec4<f32>(v5.x), sh[2u * (q + 20u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v5.y), sh[2u * (q + 21u)], acc0);
                acc1 = fma(vec4<f32>(v5.y), sh[2u * (q + 21u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v5.z), sh[2u * (q + 22u)], acc0);
                acc1 = fma(vec4<f32>(v5.z), sh[2u * (q + 22u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v5.w), sh[2u * (q + 23u)], acc0);
                acc1 = fma(vec4<f32>(v5.w), sh[2u * (q + 23u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v6.x), sh[2u * (q + 24u)], acc0);
                acc1 = fma(vec4<f32>(v6.x), sh[2u * (q + 24u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v6.y), sh[2u * (q + 25u)], acc0);
                acc1 = fma(vec4<f32>(v6.y), sh[2u * (q + 25u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v6.z), sh[2u * (q + 26u)], acc0);
                acc1 = fma(vec4<f32>(v6.z), sh[2u * (q + 26u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v6.w), sh[2u * (q + 27u)], acc0);
                acc1 = fma(vec4<f32>(v6.w), sh[2u * (q + 27u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v7.x), sh[2u * (q + 28u)], acc0);
                acc1 = fma(vec4<f32>(v7.x), sh[2u * (q + 28u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v7.y), sh[2u * (q + 29u)], acc0);
                acc1 = fma(vec4<f32>(v7.y), sh[2u * (q + 29u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v7.z), sh[2u * (q + 30u)], acc0);
                acc1 = fma(vec4<f32>(v7.z), sh[2u * (q + 30u) + 1u], acc1);
                acc0 = fma(vec4<f32>(v7.w), sh[2u * (q + 31u)], acc0);
                acc1 = fma(vec4<f32>(v7.w), sh[2u * (q + 31u) + 1u], acc1);
            }
        }
        for (; q < nl; q++) {
            let v = big[rbase + (l0 + q) * p.big_s1];
            acc0 = fma(vec4<f32>(v), sh[2u * q], acc0);
            acc1 = fma(vec4<f32>(v), sh[2u * q + 1u], acc1);
        }
        acc0 *= p.alpha;
        acc1 *= p.alpha;
        for (var c = 0u; c < 8u; c++) {
            let cc = cb + c;
            if (cc < p.ncols) {
                var v: f32;
                if (c < 4u) { v = acc0[c]; } else { v = acc1[c - 4u]; }
                outb[(kc * p.ncols + cc) * p.m + row] = v;
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
// of Big, wid.y = row segment (≤ 256 rows, its Sk rows staged), wid.z = 8-column block of Sk.
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
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    if (j < p.nbig) {
        // eight rows in flight per iteration
        var i = i0 + lane;
        for (; i + 28u < i1; i += 32u) {
            let v0 = big_quad_col(i + 0u, j, vec_ok);
            let v1 = big_quad_col(i + 4u, j, vec_ok);
            let v2 = big_quad_col(i + 8u, j, vec_ok);
            let v3 = big_quad_col(i + 12u, j, vec_ok);
            let v4 = big_quad_col(i + 16u, j, vec_ok);
            let v5 = big_quad_col(i + 20u, j, vec_ok);
            let v6 = big_quad_col(i + 24u, j, vec_ok);
            let v7 = big_quad_col(i + 28u, j, vec_ok);
            {
                let s0 = sh[2u * ((i + 0u) - i0)];
                let s1 = sh[2u * ((i + 0u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v0, a0);
                a1 = fma(vec4<f32>(s0.y), v0, a1);
                a2 = fma(vec4<f32>(s0.z), v0, a2);
                a3 = fma(vec4<f32>(s0.w), v0, a3);
                a4 = fma(vec4<f32>(s1.x), v0, a4);
                a5 = fma(vec4<f32>(s1.y), v0, a5);
                a6 = fma(vec4<f32>(s1.z), v0, a6);
                a7 = fma(vec4<f32>(s1.w), v0, a7);
            }
            {
                let s0 = sh[2u * ((i + 4u) - i0)];
                let s1 = sh[2u * ((i + 4u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v1, a0);
                a1 = fma(vec4<f32>(s0.y), v1, a1);
                a2 = fma(vec4<f32>(s0.z), v1, a2);
                a3 = fma(vec4<f32>(s0.w), v1, a3);
                a4 = fma(vec4<f32>(s1.x), v1, a4);
                a5 = fma(vec4<f32>(s1.y), v1, a5);
                a6 = fma(vec4<f32>(s1.z), v1, a6);
                a7 = fma(vec4<f32>(s1.w), v1, a7);
            }
            {
                let s0 = sh[2u * ((i + 8u) - i0)];
                let s1 = sh[2u * ((i + 8u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v2, a0);
                a1 = fma(vec4<f32>(s0.y), v2, a1);
                a2 = fma(vec4<f32>(s0.z), v2, a2);
                a3 = fma(vec4<f32>(s0.w), v2, a3);
                a4 = fma(vec4<f32>(s1.x), v2, a4);
                a5 = fma(vec4<f32>(s1.y), v2, a5);
                a6 = fma(vec4<f32>(s1.z), v2, a6);
                a7 = fma(vec4<f32>(s1.w), v2, a7);
            }
            {
                let s0 = sh[2u * ((i + 12u) - i0)];
                let s1 = sh[2u * ((i + 12u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v3, a0);
                a1 = fma(vec4<f32>(s0.y), v3, a1);
                a2 = fma(vec4<f32>(s0.z), v3, a2);
                a3 = fma(vec4<f32>(s0.w), v3, a3);
                a4 = fma(vec4<f32>(s1.x), v3, a4);
                a5 = fma(vec4<f32>(s1.y), v3, a5);
                a6 = fma(vec4<f32>(s1.z), v3, a6);
                a7 = fma(vec4<f32>(s1.w), v3, a7);
            }
            {
                let s0 = sh[2u * ((i + 16u) - i0)];
                let s1 = sh[2u * ((i + 16u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v4, a0);
                a1 = fma(vec4<f32>(s0.y), v4, a1);
                a2 = fma(vec4<f32>(s0.z), v4, a2);
                a3 = fma(vec4<f32>(s0.w), v4, a3);
                a4 = fma(vec4<f32>(s1.x), v4, a4);
                a5 = fma(vec4<f32>(s1.y), v4, a5);
                a6 = fma(vec4<f32>(s1.z), v4, a6);
                a7 = fma(vec4<f32>(s1.w), v4, a7);
            }
            {
                let s0 = sh[2u * ((i + 20u) - i0)];
                let s1 = sh[2u * ((i + 20u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v5, a0);
                a1 = fma(vec4<f32>(s0.y), v5, a1);
                a2 = fma(vec4<f32>(s0.z), v5, a2);
                a3 = fma(vec4<f32>(s0.w), v5, a3);
                a4 = fma(vec4<f32>(s1.x), v5, a4);
                a5 = fma(vec4<f32>(s1.y), v5, a5);
                a6 = fma(vec4<f32>(s1.z), v5, a6);
                a7 = fma(vec4<f32>(s1.w), v5, a7);
            }
            {
                let s0 = sh[2u * ((i + 24u) - i0)];
                let s1 = sh[2u * ((i + 24u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v6, a0);
                a1 = fma(vec4<f32>(s0.y), v6, a1);
                a2 = fma(vec4<f32>(s0.z), v6, a2);
                a3 = fma(vec4<f32>(s0.w), v6, a3);
                a4 = fma(vec4<f32>(s1.x), v6, a4);
                a5 = fma(vec4<f32>(s1.y), v6, a5);
                a6 = fma(vec4<f32>(s1.z), v6, a6);
                a7 = fma(vec4<f32>(s1.w), v6, a7);
            }
            {
                let s0 = sh[2u * ((i + 28u) - i0)];
                let s1 = sh[2u * ((i + 28u) - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v7, a0);
                a1 = fma(vec4<f32>(s0.y), v7, a1);
                a2 = fma(vec4<f32>(s0.z), v7, a2);
                a3 = fma(vec4<f32>(s0.w), v7, a3);
                a4 = fma(vec4<f32>(s1.x), v7, a4);
                a5 = fma(vec4<f32>(s1.y), v7, a5);
                a6 = fma(vec4<f32>(s1.z), v7, a6);
                a7 = fma(vec4<f32>(s1.w), v7, a7);
            }
        }
        for (; i < i1; i += 4u) {
            let v = big_quad_col(i, j, vec_ok);
            {
                let s0 = sh[2u * (i - i0)];
                let s1 = sh[2u * (i - i0) + 1u];
                a0 = fma(vec4<f32>(s0.x), v, a0);
                a1 = fma(vec4<f32>(s0.y), v, a1);
                a2 = fma(vec4<f32>(s0.z), v, a2);
                a3 = fma(vec4<f32>(s0.w), v, a3);
                a4 = fma(vec4<f32>(s1.x), v, a4);
                a5 = fma(vec4<f32>(s1.y), v, a5);
                a6 = fma(vec4<f32>(s1.z), v, a6);
                a7 = fma(vec4<f32>(s1.w), v, a7);
            }
        }
    }
    // reduce the 4 row-lanes, 2 sk-columns per round
    for (var rnd = 0u; rnd < 4u; rnd++) {
        workgroupBarrier();
        var x0 = a0;
        var x1 = a1;
        if (rnd == 1u) { x0 = a2; x1 = a3; }
        if (rnd == 2u) { x0 = a4; x1 = a5; }
        if (rnd == 3u) { x0 = a6; x1 = a7; }
        sh[2u * t] = x0;
        sh[2u * t + 1u] = x1;
        workgroupBarrier();
        if (lane == 0u && j < p.nbig) {
            let s0 = sh[2u * ct] + sh[2u * (ct + 64u)] + sh[2u * (ct + 128u)] + sh[2u * (ct + 192u)];
            let s1 = sh[2u * ct + 1u] + sh[2u * (ct + 64u) + 1u] + sh[2u * (ct + 128u) + 1u] + sh[2u * (ct + 192u) + 1u];
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
