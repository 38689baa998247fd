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
    alpha: f32, beta: f32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: SkParams;
@group(0) @binding(1) var<storage, read> big: array<f32>;
@group(0) @binding(2) var<storage, read> sk: array<f32>;
@group(0) @binding(3) var<storage, read_write> outb: array<f32>;

var<workgroup> red: array<vec4<f32>, 512>;

fn sk_row(l: u32, cb: u32) -> array<f32, 8> {
    var v: array<f32, 8>;
    let base = p.sk_off + l * p.sk_s0;
    for (var c = 0u; c < 8u; c++) {
        let cc = cb + c;
        v[c] = select(0.0, sk[base + min(cc, p.ncols - 1u) * p.sk_s1], cc < p.ncols);
    }
    return v;
}

// 16 rows x 16 lanes per workgroup; lanes stride the reduction dimension.
// m rows of Big (and out), kdim = reduction length, ncols = columns of Sk.
@compute @workgroup_size(256, 1, 1)
fn tall_skinny(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let blk = wid.y * p.gridx + wid.x;
    let row = blk * 16u + t / 16u;
    let lane = t % 16u;
    let cb = wid.z * 8u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    if (row < p.m) {
        let rbase = p.big_off + row * p.big_s0;
        for (var l = lane; l < p.kdim; l += 16u) {
            let v = big[rbase + l * p.big_s1];
            let s = sk_row(l, cb);
            acc0 = fma(vec4<f32>(v), vec4<f32>(s[0], s[1], s[2], s[3]), acc0);
            acc1 = fma(vec4<f32>(v), vec4<f32>(s[4], s[5], s[6], s[7]), acc1);
        }
    }
    red[2u * t] = acc0;
    red[2u * t + 1u] = acc1;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[2u * t] += red[2u * (t + s)];
            red[2u * t + 1u] += red[2u * (t + s) + 1u];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.m) {
        let a0 = red[2u * t] * p.alpha;
        let a1 = red[2u * t + 1u] * p.alpha;
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

// 64 columns x 4 row-lanes per workgroup; wid.x = column block of Big, wid.y = row segment.
// m rows (reduction), nbig = columns of Big, ncols = columns of Sk. part is outb, laid out
// [seg][ncols][nbig].
@compute @workgroup_size(256, 1, 1)
fn skinny_t_big(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * 64u + t % 64u;
    let lane = t / 64u;
    let seg = wid.y;
    let cb = wid.z * 8u;
    let i0 = seg * p.seg_rows;
    let i1 = min(i0 + p.seg_rows, p.m);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    if (j < p.nbig) {
        for (var i = i0 + lane; i < i1; i += 4u) {
            let v = big[p.big_off + i * p.big_s0 + j * p.big_s1];
            let s = sk_row(i, cb);
            acc0 = fma(vec4<f32>(v), vec4<f32>(s[0], s[1], s[2], s[3]), acc0);
            acc1 = fma(vec4<f32>(v), vec4<f32>(s[4], s[5], s[6], s[7]), acc1);
        }
    }
    red[2u * t] = acc0;
    red[2u * t + 1u] = acc1;
    workgroupBarrier();
    if (lane == 0u && j < p.nbig) {
        var s0 = red[2u * t];
        var s1 = red[2u * t + 1u];
        for (var q = 1u; q < 4u; q++) {
            s0 += red[2u * (t + 64u * q)];
            s1 += red[2u * (t + 64u * q) + 1u];
        }
        for (var c = 0u; c < 8u; c++) {
            let cc = cb + c;
            if (cc < p.ncols) {
                var v: f32;
                if (c < 4u) { v = s0[c]; } else { v = s1[c - 4u]; }
                outb[(seg * p.ncols + cc) * p.nbig + j] = v;
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
