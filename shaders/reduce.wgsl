// Reductions for the recorded metrics.
//   risk_partial: per workgroup, sums over its elements (i, j) of the d x k matrix of
//       e1 = (AB)_ij - D_ij - (A0 B0)_ij   (AB - Delta_eff; the offset term only when offset = 1)
//       e2 = (AB)_ij - D_ij                 (AB - Delta)
//     computed directly (not by a trace identity) so that small risks keep their f32 accuracy.
//   finish_risk: one workgroup sums the partials and writes risk = e1sum/2 and
//     err_f = sqrt(e2sum) to rec[2*state[2]], rec[2*state[2]+1], then increments state[2].
//   sum_partials: one workgroup, out[0] = scale * sum(partials).

struct RkParams {
    d: u32, k: u32, r: u32, offset: u32,
    a_off: u32, a_s0: u32, nparts: u32, per_wg: u32,
    scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: RkParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> a0: array<f32>;
@group(0) @binding(4) var<storage, read> b0: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> parts: array<f32>;

var<workgroup> r1: array<f32, 256>;
var<workgroup> r2: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn risk_partial(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.y * nwg.x + wid.x;
    let total = p.d * p.k;
    let start = wg * p.per_wg;
    let end = min(start + p.per_wg, total);
    var s1 = 0.0;
    var s2 = 0.0;
    for (var idx = start + t; idx < end; idx += 256u) {
        let i = idx / p.k;
        let j = idx % p.k;
        var ab = 0.0;
        var pp = 0.0;
        for (var c = 0u; c < p.r; c++) {
            ab = fma(a[p.a_off + i * p.a_s0 + c], b[c * p.k + j], ab);
        }
        if (p.offset != 0u) {
            for (var c = 0u; c < p.r; c++) {
                pp = fma(a0[i * p.r + c], b0[c * p.k + j], pp);
            }
        }
        let e2 = ab - delta[idx];
        let e1 = e2 - pp;
        s1 = fma(e1, e1, s1);
        s2 = fma(e2, e2, s2);
    }
    r1[t] = s1;
    r2[t] = s2;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            r1[t] += r1[t + s];
            r2[t] += r2[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        parts[2u * wg] = r1[0];
        parts[2u * wg + 1u] = r2[0];
    }
}

@group(1) @binding(0) var<storage, read> fparts: array<f32>;
@group(1) @binding(1) var<storage, read_write> rec: array<f32>;
@group(1) @binding(2) var<storage, read_write> state: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn finish_risk(@builtin(local_invocation_index) t: u32) {
    var s1 = 0.0;
    var s2 = 0.0;
    for (var w = t; w < p.nparts; w += 256u) {
        s1 += fparts[2u * w];
        s2 += fparts[2u * w + 1u];
    }
    r1[t] = s1;
    r2[t] = s2;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            r1[t] += r1[t + s];
            r2[t] += r2[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        let slot = state[2];
        rec[2u * slot] = 0.5 * r1[0];
        rec[2u * slot + 1u] = sqrt(r2[0]);
        state[2] = slot + 1u;
    }
}

@compute @workgroup_size(256, 1, 1)
fn sum_partials(@builtin(local_invocation_index) t: u32) {
    var s1 = 0.0;
    for (var w = t; w < p.nparts; w += 256u) {
        s1 += fparts[w];
    }
    r1[t] = s1;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { r1[t] += r1[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) { rec[0] = p.scale * r1[0]; }
}
