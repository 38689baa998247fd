// Up to four independent segment reductions in one dispatch (fewer pipeline barriers per step):
// job q sums part_q[seg][c][j] over its nseg segments into out_q(c, j) = out_q[off + c*s0 + j*s1]
// (times alpha, plus beta times the old value). Workgroups [wg0_q, wg0_{q+1}) belong to job q.
// Jobs writing into one buffer share its binding: out_slot names the binding (0..3) of job q's
// output, since WebGPU forbids one buffer in two writable bindings of a dispatch.

struct RJob {
    ncols: u32, nbig: u32, nseg: u32, out_off: u32,
    out_s0: u32, out_s1: u32, wg0: u32, out_slot: u32,
    alpha: f32, beta: f32, _p1: u32, _p2: u32,
}

struct RParams {
    njobs: u32, _a: u32, _b: u32, _c: u32,
    jobs: array<RJob, 4>,
}

@group(0) @binding(0) var<uniform> rp: RParams;
@group(0) @binding(1) var<storage, read> part0: array<f32>;
@group(0) @binding(2) var<storage, read> part1: array<f32>;
@group(0) @binding(3) var<storage, read> part2: array<f32>;
@group(0) @binding(4) var<storage, read> part3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out1: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;
@group(0) @binding(8) var<storage, read_write> out3: array<f32>;

fn part_at(job: u32, i: u32) -> f32 {
    switch job {
        case 0u: { return part0[i]; }
        case 1u: { return part1[i]; }
        case 2u: { return part2[i]; }
        default: { return part3[i]; }
    }
}

fn out_get(job: u32, i: u32) -> f32 {
    switch job {
        case 0u: { return out0[i]; }
        case 1u: { return out1[i]; }
        case 2u: { return out2[i]; }
        default: { return out3[i]; }
    }
}

fn out_set(job: u32, i: u32, v: f32) {
    switch job {
        case 0u: { out0[i] = v; }
        case 1u: { out1[i] = v; }
        case 2u: { out2[i] = v; }
        default: { out3[i] = v; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn reduce_multi(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.y * nwg.x + wid.x;
    var job = 0u;
    for (var q = 1u; q < rp.njobs; q++) {
        if (wg >= rp.jobs[q].wg0) { job = q; }
    }
    let jb = rp.jobs[job];
    let idx = (wg - jb.wg0) * 256u + t;
    if (idx >= jb.ncols * jb.nbig) { return; }
    let c = idx / jb.nbig;
    let j = idx % jb.nbig;
    var s = 0.0;
    for (var g = 0u; g < jb.nseg; g++) {
        s += part_at(job, (g * jb.ncols + c) * jb.nbig + j);
    }
    let o = jb.out_off + c * jb.out_s0 + j * jb.out_s1;
    var v = jb.alpha * s;
    if (jb.beta != 0.0) { v += jb.beta * out_get(jb.out_slot, o); }
    out_set(jb.out_slot, o, v);
}
