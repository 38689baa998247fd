// Element-wise kernels over an m x n matrix (row-major, contiguous), one thread per element,
// grid folded into 2-D (x * 256 threads per row of the grid).
//   rank_update: X(i, j) <- beta * X(i, j) + alpha * sum_c U(i, c) V(c, j)
//   form_e:      E = Y - Z0 (linear) or (Y - Z0) * 1{Z0 > 0} (ReLU); per-workgroup sums of E^2
//   residual:    Z = Z0 + U V (U = X A, N x r; V = B, r x k), F = f(Z) - Y,
//                R = F (linear) or F * 1{Z > 0} (ReLU); per-workgroup sums of F^2

struct EwParams {
    m: u32, n: u32, r: u32, relu: u32,
    u_off: u32, u_s0: u32, u_s1: u32, v_off: u32,
    v_s0: u32, v_s1: u32, _p0: u32, _p1: u32,
    alpha: f32, beta: f32, _p2: u32, _p3: u32,
}

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;

var<workgroup> red: array<f32, 256>;

fn lin(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 256u + gid.x;
}

fn uv(i: u32, j: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.r; c++) {
        s = fma(u[p.u_off + i * p.u_s0 + c * p.u_s1], v[p.v_off + c * p.v_s0 + j * p.v_s1], s);
    }
    return s;
}

fn block_sum(t: u32, val: f32, wg: u32) {
    red[t] = val;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) { partial[wg] = red[0]; }
}

@compute @workgroup_size(256, 1, 1)
fn rank_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = lin(gid, nwg);
    if (idx >= p.m * p.n) { return; }
    let i = idx / p.n;
    let j = idx % p.n;
    var o = p.alpha * uv(i, j);
    if (p.beta != 0.0) { o += p.beta * x[idx]; }
    x[idx] = o;
}

// u = Y, v = Z0, x = E (output)
@compute @workgroup_size(256, 1, 1)
fn form_e(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let idx = lin(gid, nwg);
    var e = 0.0;
    if (idx < p.m * p.n) {
        let z = v[idx];
        e = u[idx] - z;
        if (p.relu != 0u && z <= 0.0) { e = 0.0; }
        x[idx] = e;
    }
    block_sum(t, e * e, wid.y * nwg.x + wid.x);
}

// u = X A (N x r, strided view), v = B (r x k view), x = R (output), partial = loss sums.
// Z0eff and Y come through the extra bindings below.
@group(0) @binding(5) var<storage, read> z0: array<f32>;
@group(0) @binding(6) var<storage, read> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn residual(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let idx = lin(gid, nwg);
    var f2 = 0.0;
    if (idx < p.m * p.n) {
        let i = idx / p.n;
        let j = idx % p.n;
        let z = z0[idx] + uv(i, j);
        var f = z - y[idx];
        if (p.relu != 0u) {
            f = max(z, 0.0) - y[idx];
        }
        f2 = f * f;
        if (p.relu != 0u && z <= 0.0) { f = 0.0; }
        x[idx] = f;
    }
    block_sum(t, f2, wid.y * nwg.x + wid.x);
}
