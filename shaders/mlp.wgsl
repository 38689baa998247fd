// The digits model (a bias-free two-layer ReLU network, SPEC §9): the element-wise and per-row
// parts of its forward and backward passes. The five products (X W1, H W2, H^T dZ2, dZ2 W2^T,
// X^T dZ1) run in matmul.wgsl. CPU twin: `digits::Net::eval`.
//   relu:         H = max(Z, 0) over the m*n elements of Z (n x hidden)
//   softmax_xent: one thread per sample i of the logits L (m samples x n classes), labels y[i]
//                 stored as floats: rows[2i] = ln sum_j exp(L_ij) - L_iy (the cross-entropy, in
//                 log-sum-exp form), rows[2i+1] = 1 when the first largest logit is y[i], else 0;
//                 with grad != 0, L_i <- (softmax(L_i) - e_y) / m, the loss's gradient in the
//                 logits (in place)
//   relu_back:    D <- D * 1{Z > 0}, the hidden layer's gradient through the ReLU (in place)

struct MlpParams {
    m: u32, n: u32, grad: u32, _p: u32,
}

@group(0) @binding(0) var<uniform> p: MlpParams;
// Z (relu, relu_back) or the labels (softmax_xent)
@group(0) @binding(1) var<storage, read> src: array<f32>;
// H (relu), the logits (softmax_xent) or D (relu_back)
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
// per-sample loss and hit (softmax_xent)
@group(0) @binding(3) var<storage, read_write> rows: array<f32>;

fn lin(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 256u + gid.x;
}

@compute @workgroup_size(256, 1, 1)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = lin(gid, nwg);
    if (idx >= p.m * p.n) { return; }
    x[idx] = max(src[idx], 0.0);
}

@compute @workgroup_size(256, 1, 1)
fn relu_back(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = lin(gid, nwg);
    if (idx >= p.m * p.n) { return; }
    if (src[idx] <= 0.0) { x[idx] = 0.0; }
}

@compute @workgroup_size(64, 1, 1)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= p.m) { return; }
    let base = i * p.n;
    let y = u32(src[i]);
    // the first largest logit (the CPU twin's argmax) and the row's maximum
    var best = 0u;
    var mx = x[base];
    for (var j = 1u; j < p.n; j++) {
        let v = x[base + j];
        if (v > mx) { mx = v; best = j; }
    }
    var s = 0.0;
    for (var j = 0u; j < p.n; j++) {
        s += exp(x[base + j] - mx);
    }
    rows[2u * i] = log(s) - (x[base + y] - mx);
    rows[2u * i + 1u] = select(0.0, 1.0, best == y);
    if (p.grad != 0u) {
        let inv = 1.0 / (s * f32(p.m));
        for (var j = 0u; j < p.n; j++) {
            var g = exp(x[base + j] - mx) * inv;
            if (j == y) { g -= 1.0 / f32(p.m); }
            x[base + j] = g;
        }
    }
}
