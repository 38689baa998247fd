// The phase-portrait surface (twin of phase::surface): log10(L(a, b) + eps) on an nx x ny grid,
// row-major with rows over b (j) and columns over a (i), where on the rank-one plane
// L(a, b) = ½ s (ab - m)² + cmin, m = g/s and cmin = c - ½ g m (computed on the host in f64).

struct SfParams {
    nx: u32, ny: u32, _p0: u32, _p1: u32,
    a_min: f32, a_max: f32, b_min: f32, b_max: f32,
    s: f32, m: f32, cmin: f32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: SfParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(16, 16, 1)
fn surface(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let j = gid.y;
    if (i >= p.nx || j >= p.ny) { return; }
    let a = p.a_min + (p.a_max - p.a_min) * f32(i) / f32(max(p.nx, 2u) - 1u);
    let b = p.b_min + (p.b_max - p.b_min) * f32(j) / f32(max(p.ny, 2u) - 1u);
    let q = a * b - p.m;
    let loss = max(0.5 * p.s * q * q + p.cmin, 0.0);
    out[j * p.nx + i] = log2(loss + p.eps) * 0.30102999566398120;
}
