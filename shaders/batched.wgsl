// Batched small-problem path: many LoRA trajectories and many optimiser steps in one dispatch.
//
// Linear model, factored form (SPEC §1): per trajectory with factors A (d×r), B (r×k),
//   X = Σ̂A,  Y = G_eff Bᵀ,  Z = (AᵀG_eff)ᵀ,  P = AᵀX,  Q = BBᵀ,
//   ∇_A = X·Q − Y,  ∇_B = P·B − AᵀG_eff,  L = ½tr(PQ) − tr(AᵀY) + c.
// An offset init (LoRA-GA) has G_eff = G + Σ̂A0B0: its terms come from SA0 = Σ̂A0 (uploaded once)
// and the r×r Grams E = B0Bᵀ and F = AᵀSA0 (G_eff is never formed).
//
// One workgroup owns a pack of T trajectories for the whole dispatch and loops over the steps
// with barriers only. The pack's factors sit side by side as one combined matrix: A (d×CP) =
// [A_1 … A_T], B (k×CP) = [B_1ᵀ … B_Tᵀ] (CP = T·r padded to a multiple of 8 with zero columns),
// so the three big products are  M(j, i) · C(j, c)  with M ∈ {Σ̂, Gᵀ, G}: each element of Σ̂ or G
// that a thread reads (coalesced over i) feeds 8 columns of the pack.
//
// Pack memory: A, B and the work matrices X, Y (max(d,k)×CP each) and the r×r matrices P, Q, K
// live at offsets p.wa … of one array. Where it fits the adapter's workgroup memory, the host
// builds this shader with the block between PACK MEMORY markers replaced by a workgroup array
// (`gpu::batched::shader_source`): the pack is copied in at the start of the dispatch and A, B
// copied out at the end. Otherwise (as written here) the pack lives in its storage region.
// Storage (`st`, per pack p.ws floats) also holds A0, B0, SA0 (offset runs) and E, F.
//
// Per trajectory (rp, 8 floats): [η, λ, c, limit, status, status step, offset, loss].
// status: 0 running, 1 loss above limit, 2 non-finite, 3 singular preconditioner. A trajectory
// that stops keeps its factors; the others go on.
//
// Records. A recorded step costs the step loop no extra phase: it writes the loss into the
// record row and copies A and Bᵀ into a snapshot slot (`snap`; rows padded to a vec4). After the
// dispatch, `batched_metrics` (one workgroup per trajectory and slot, all in parallel) forms
// risk, ‖AB − Δ‖_F and four r×r Grams into the slot's scratch: AᵀA, BBᵀ, RᵀR and SᵀS with
// R = (I − UUᵀ)A, S = (I − VVᵀ)Bᵀ (U, V G's top-r* singular bases); then `align_metrics` (the
// same workgroup) turns the Grams into sin θ_A, sin θ_B and σ(AB) by Jacobi eigensolves. A
// record row per trajectory holds RS floats: [loss, risk, ‖AB − Δ‖_F, sin θ_A, sin θ_B (−1:
// undefined), σ(AB) (r, descending)] (+ A (d×r) and B (r×k) row-major when `full`). The CPU
// twin of `align_metrics` is `linalg::gram_metrics`.
//
// The CPU twin is `CpuBackend` (f64), which advances the same batch run by run.

struct Params {
    d: u32, k: u32, r: u32, rs: u32,
    t: u32, tr: u32, cp: u32, nb: u32,
    nsteps: u32, step0: u32, rec_every: u32, last_step: u32,
    first_new: u32, precond: u32, full: u32, ws: u32,
    o_sig: u32, o_g: u32, o_gt: u32, o_del: u32,
    o_u: u32, o_v: u32, oa: u32, ob: u32,
    oa0: u32, ob0: u32, osa0: u32, sf: u32,
    snt: u32, oe: u32, of_: u32, rstride: u32,
    wa: u32, wb: u32, wx: u32, wy: u32,
    wp: u32, wq: u32, wk: u32, any_offset: u32,
    pack0: u32, wfloats: u32, rb: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Σ̂ (d×d), G (d×k), Gᵀ (k×d), Δ (d×k), U (d×r*), V (k×r*), row-major, at p.o_*.
@group(0) @binding(1) var<storage, read> big: array<f32>;
// per pack: p.ws floats at pack·ws (vec4 units)
@group(0) @binding(2) var<storage, read_write> st: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> rp: array<f32>;
@group(0) @binding(4) var<storage, read_write> rec: array<f32>;
// snapshot slots: slot n, trajectory x of the segment at (n·snt + x)·sf floats: A (d rows) then
// Bᵀ (k rows), each row r floats padded to a vec4; then 7 r×r blocks of scratch (the four Grams
// and three work matrices of `align_metrics`)
@group(0) @binding(5) var<storage, read_write> snap: array<vec4<f32>>;
// the offset runs' A0, B0ᵀ, one block of sf floats per run as in `snap` (metrics only)
@group(0) @binding(6) var<storage, read> base0: array<vec4<f32>>;

const WG: u32 = 256u;
const MAXT: u32 = 16u;
// row groups of the trace sums (a fixed number, so that the sums' order does not depend on the
// pack: results are the same whatever T)
const TRG: u32 = 8u;

var<workgroup> wtr: array<f32, 256>;   // their partial sums over the rows i ≡ g (mod TRG)
var<workgroup> wpq: array<f32, 32>;    // Σ_b P(a, b) Q(b, a) per column a of a trajectory
var<workgroup> wrun: array<vec4<f32>, 16>;  // per trajectory: η, c, limit (fixed in a dispatch)
var<workgroup> wl: array<f32, 16>;     // loss
var<workgroup> alive: array<u32, 16>;
var<workgroup> sing: array<u32, 16>;
var<private> base: u32;                // this pack's storage region (floats)

// BEGIN PACK MEMORY
fn ldw(i: u32) -> f32 { return st[(base + i) >> 2u][(base + i) & 3u]; }
fn stw(i: u32, v: f32) { st[(base + i) >> 2u][(base + i) & 3u] = v; }
fn ldw4(i: u32) -> vec4<f32> { return st[(base >> 2u) + i]; }
fn stw4(i: u32, v: vec4<f32>) { st[(base >> 2u) + i] = v; }
fn pack_in(tid: u32) {}
fn pack_out(tid: u32) {}
// a phase boundary: pack memory is storage here
fn sync() {
    storageBarrier();
    workgroupBarrier();
}
// END PACK MEMORY

fn nonfinite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

fn lds(i: u32) -> f32 { return st[(base + i) >> 2u][(base + i) & 3u]; }
fn sts(i: u32, v: f32) { st[(base + i) >> 2u][(base + i) & 3u] = v; }
fn lds4(i: u32) -> vec4<f32> { return st[(base >> 2u) + i]; }

// out(row, c) = Σ_j M(j, row) · C(j, c) for rows < nrows, 8 columns (2 vec4) per task and
// p.rb rows (1 or 2: rows row and row + ⌈nrows/2⌉, so that a pack's products take one round of
// the workgroup instead of two and each loaded column of C feeds both); C and out in pack memory
// (vec4 offsets cv, ov), M in `big` at mo with row stride nrows. Each output is summed in the
// same order whatever p.rb, so results do not depend on it.
fn product(task: u32, nrows: u32, inner: u32, mo: u32, cv: u32, ov: u32) {
    let cpv = p.cp / 4u;
    let nr = (nrows + p.rb - 1u) / p.rb;
    let g = task / nr;
    let row = task % nr;
    let xv = cv + 2u * g;
    // the second row (a valid row to read when there is none; its sums are dropped)
    let two = p.rb == 2u && row + nr < nrows;
    let row2 = select(row, row + nr, two);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var e0 = vec4<f32>(0.0);
    var e1 = vec4<f32>(0.0);
    // eight rows of M a turn: their loads are independent, so they are in flight together
    // (a lone pack's step waits mostly on these loads)
    var j = 0u;
    for (; j + 7u < inner; j += 8u) {
        let mi = mo + j * nrows + row;
        let m0 = big[mi];
        let m1 = big[mi + nrows];
        let m2 = big[mi + 2u * nrows];
        let m3 = big[mi + 3u * nrows];
        let m4 = big[mi + 4u * nrows];
        let m5 = big[mi + 5u * nrows];
        let m6 = big[mi + 6u * nrows];
        let m7 = big[mi + 7u * nrows];
        let x0 = xv + j * cpv;
        let y00 = ldw4(x0);
        let y01 = ldw4(x0 + 1u);
        let y10 = ldw4(x0 + cpv);
        let y11 = ldw4(x0 + cpv + 1u);
        let y20 = ldw4(x0 + 2u * cpv);
        let y21 = ldw4(x0 + 2u * cpv + 1u);
        let y30 = ldw4(x0 + 3u * cpv);
        let y31 = ldw4(x0 + 3u * cpv + 1u);
        let y40 = ldw4(x0 + 4u * cpv);
        let y41 = ldw4(x0 + 4u * cpv + 1u);
        let y50 = ldw4(x0 + 5u * cpv);
        let y51 = ldw4(x0 + 5u * cpv + 1u);
        let y60 = ldw4(x0 + 6u * cpv);
        let y61 = ldw4(x0 + 6u * cpv + 1u);
        let y70 = ldw4(x0 + 7u * cpv);
        let y71 = ldw4(x0 + 7u * cpv + 1u);
        a0 += m0 * y00;
        a1 += m0 * y01;
        b0 += m1 * y10;
        b1 += m1 * y11;
        a0 += m2 * y20;
        a1 += m2 * y21;
        b0 += m3 * y30;
        b1 += m3 * y31;
        a0 += m4 * y40;
        a1 += m4 * y41;
        b0 += m5 * y50;
        b1 += m5 * y51;
        a0 += m6 * y60;
        a1 += m6 * y61;
        b0 += m7 * y70;
        b1 += m7 * y71;
        if (p.rb == 2u) {
            let ni = mo + j * nrows + row2;
            let n0 = big[ni];
            let n1 = big[ni + nrows];
            let n2 = big[ni + 2u * nrows];
            let n3 = big[ni + 3u * nrows];
            let n4 = big[ni + 4u * nrows];
            let n5 = big[ni + 5u * nrows];
            let n6 = big[ni + 6u * nrows];
            let n7 = big[ni + 7u * nrows];
            c0 += n0 * y00;
            c1 += n0 * y01;
            e0 += n1 * y10;
            e1 += n1 * y11;
            c0 += n2 * y20;
            c1 += n2 * y21;
            e0 += n3 * y30;
            e1 += n3 * y31;
            c0 += n4 * y40;
            c1 += n4 * y41;
            e0 += n5 * y50;
            e1 += n5 * y51;
            c0 += n6 * y60;
            c1 += n6 * y61;
            e0 += n7 * y70;
            e1 += n7 * y71;
        }
    }
    for (; j < inner; j++) {
        let x0 = xv + j * cpv;
        let y0 = ldw4(x0);
        let y1 = ldw4(x0 + 1u);
        let m0 = big[mo + j * nrows + row];
        a0 += m0 * y0;
        a1 += m0 * y1;
        if (p.rb == 2u) {
            let n0 = big[mo + j * nrows + row2];
            c0 += n0 * y0;
            c1 += n0 * y1;
        }
    }
    let o = ov + row * cpv + 2u * g;
    stw4(o, a0 + b0);
    stw4(o + 1u, a1 + b1);
    if (two) {
        let o2 = ov + row2 * cpv + 2u * g;
        stw4(o2, c0 + e0);
        stw4(o2 + 1u, c1 + e1);
    }
}

// Write v to element (c, e) of the block-diagonal r×r matrices, if c and e belong to the same
// trajectory: mode 0 at pack offset dst, 1 at storage offset dst, 2 in the record rows (dst is
// the first trajectory's field offset in `rec`, rows p.rstride apart, `g0` its index).
fn put_block(c: u32, e: u32, v: f32, dst: u32, mode: u32, g0: u32) {
    let r = p.r;
    if (c < p.tr && e < p.tr && c / r == e / r) {
        let t = c / r;
        let inner = (c % r) * r + (e % r);
        if (mode == 0u) { stw(dst + t * r * r + inner, v); }
        else if (mode == 1u) { sts(dst + t * r * r + inner, v); }
        else if (g0 + t < p.nb) { rec[dst + t * p.rstride + inner] = v; }
    }
}

// A Gram tile's rows plus one pair of rows of X and Y: a[j] + (x.j·y + x2.j·y2).
fn pair_add(a: mat4x4<f32>, x: vec4<f32>, x2: vec4<f32>, y: vec4<f32>, y2: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        a[0] + (x.x * y + x2.x * y2),
        a[1] + (x.y * y + x2.y * y2),
        a[2] + (x.z * y + x2.z * y2),
        a[3] + (x.w * y + x2.w * y2),
    );
}

// One 4×4 tile (tile = tx·cpv + ty) of XᵀY over n rows; X, Y in pack memory (vec4 offsets xv,
// yv) or, when `x_st`, X in storage. Tiles that meet no trajectory's diagonal block are skipped.
fn gram_tile(tile: u32, n: u32, xv: u32, x_st: bool, yv: u32, dst: u32, mode: u32, g0: u32) {
    let cpv = p.cp / 4u;
    let tx = tile / cpv;
    let ty = tile % cpv;
    let r = p.r;
    let c0 = tx * 4u;
    let d0 = ty * 4u;
    if (c0 >= p.tr || d0 >= p.tr) { return; }
    if ((c0 + 3u) / r < d0 / r || (d0 + 3u) / r < c0 / r) { return; }
    // a[j] = row c0 + j of the tile; rows of X and Y summed in pairs (`pair_add`), four rows a
    // turn so that their eight loads are in flight together (eight a turn gained 1–2 % on the
    // H200 but made SwiftShader's compile of the kernel ~25 % longer)
    var a = mat4x4<f32>();
    var i = 0u;
    for (; i + 3u < n; i += 4u) {
        let x0 = ld4(x_st, xv + i * cpv + tx);
        let x1 = ld4(x_st, xv + (i + 1u) * cpv + tx);
        let x2 = ld4(x_st, xv + (i + 2u) * cpv + tx);
        let x3 = ld4(x_st, xv + (i + 3u) * cpv + tx);
        let y = yv + i * cpv + ty;
        let y0 = ldw4(y);
        let y1 = ldw4(y + cpv);
        let y2 = ldw4(y + 2u * cpv);
        let y3 = ldw4(y + 3u * cpv);
        a = pair_add(a, x0, x1, y0, y1);
        a = pair_add(a, x2, x3, y2, y3);
    }
    for (; i + 1u < n; i += 2u) {
        let x = ld4(x_st, xv + i * cpv + tx);
        let x2 = ld4(x_st, xv + (i + 1u) * cpv + tx);
        a = pair_add(a, x, x2, ldw4(yv + i * cpv + ty), ldw4(yv + (i + 1u) * cpv + ty));
    }
    if (i < n) {
        let x = ld4(x_st, xv + i * cpv + tx);
        let y = ldw4(yv + i * cpv + ty);
        a = mat4x4<f32>(a[0] + x.x * y, a[1] + x.y * y, a[2] + x.z * y, a[3] + x.w * y);
    }
    for (var v = 0u; v < 4u; v++) {
        put_block(c0, d0 + v, a[0][v], dst, mode, g0);
        put_block(c0 + 1u, d0 + v, a[1][v], dst, mode, g0);
        put_block(c0 + 2u, d0 + v, a[2][v], dst, mode, g0);
        put_block(c0 + 3u, d0 + v, a[3][v], dst, mode, g0);
    }
}

// The tiles of the block diagonal, numbered compactly (so that a phase's products and Grams fit
// one round of the workgroup where the full cpv² grid of tiles would spill into a second): the
// column groups ty whose columns share a trajectory with group tx's form one run [lo, hi].
fn diag_span(tx: u32) -> vec2<u32> {
    let r = p.r;
    let c0 = tx * 4u;
    let c1 = min(c0 + 3u, p.tr - 1u);
    let lo = (c0 / r) * r / 4u;
    let hi = min(((c1 / r + 1u) * r - 1u) / 4u, (p.tr - 1u) / 4u);
    return vec2<u32>(lo, hi);
}

// How many tiles of the grid meet a trajectory's diagonal block.
fn diag_tiles() -> u32 {
    var n = 0u;
    for (var tx = 0u; tx * 4u < p.tr; tx++) {
        let s = diag_span(tx);
        n += s.y - s.x + 1u;
    }
    return n;
}

// The grid index (tx·cpv + ty) of the e-th tile that meets the block diagonal.
fn diag_tile(e: u32) -> u32 {
    var left = e;
    var tx = 0u;
    var s = diag_span(0u);
    while (left > s.y - s.x && (tx + 1u) * 4u < p.tr) {
        left -= s.y - s.x + 1u;
        tx += 1u;
        s = diag_span(tx);
    }
    return tx * (p.cp / 4u) + s.x + left;
}

// Σ_a C(row, t·r + a) · S_t(a, b) for the column c = t·r + b of a row: C at offset co (row
// stride CP) in pack memory or, when `c_st`, in storage; S_t trajectory t's r×r block at offset so
// (pack memory, or storage when `s_st`), read as S_t(b, a) when `tr_s`.
fn row_block(row: u32, c: u32, co: u32, c_st: bool, so: u32, s_st: bool, tr_s: bool) -> f32 {
    let r = p.r;
    let t = c / r;
    let b = c % r;
    let ci = co + row * p.cp + t * r;
    let si = so + t * r * r;
    var s = 0.0;
    for (var a = 0u; a < r; a++) {
        var x: f32;
        if (c_st) { x = lds(ci + a); } else { x = ldw(ci + a); }
        var k = si + a * r + b;
        if (tr_s) { k = si + b * r + a; }
        var y: f32;
        if (s_st) { y = lds(k); } else { y = ldw(k); }
        s += x * y;
    }
    return s;
}

// A vec4 in storage (`in_st`) or in pack memory.
fn ld4(in_st: bool, i: u32) -> vec4<f32> {
    if (in_st) { return lds4(i); }
    return ldw4(i);
}

// The 4×4 block of an r×r matrix (rv = r/4 vec4s a row) whose rows are the vec4s k0 + j·rv,
// transposed when `tr`: its column j multiplies element j of a vec4 of C.
fn s_block(k0: u32, rv: u32, in_st: bool, tr: bool) -> mat4x4<f32> {
    let m = mat4x4<f32>(ld4(in_st, k0), ld4(in_st, k0 + rv), ld4(in_st, k0 + 2u * rv), ld4(in_st, k0 + 3u * rv));
    if (tr) { return transpose(m); }
    return m;
}

// acc + x.x·m[0] + x.y·m[1] + x.z·m[2] + x.w·m[3], summed in that order (each lane as
// `row_block` sums).
fn mul_add4(acc: vec4<f32>, x: vec4<f32>, m: mat4x4<f32>) -> vec4<f32> {
    var a = acc;
    a += x.x * m[0];
    a += x.y * m[1];
    a += x.z * m[2];
    a += x.w * m[3];
    return a;
}

// Where the vec4 row blocks of column c (r a multiple of 4) start: C's row block (vec4 index),
// S_t (vec4 index) and the column's index b within its trajectory.
fn block_at(row: u32, c: u32, co: u32, so: u32) -> vec3<u32> {
    let r = p.r;
    let t = c / r;
    return vec3<u32>((co + row * p.cp + t * r) / 4u, (so + t * r * r) / 4u, c % r);
}

// The first vec4 of the S block that columns b … b + 3 of a row block need at turn a4: S_t rows
// a = 4·a4 … 4·a4 + 3, columns b … b + 3 (or, when `tr`, rows b … b + 3 and columns a …, whose
// transpose is the block needed); S_t at vec4 index si, rv = r/4 vec4s a row.
fn s_at(si: u32, b: u32, a4: u32, rv: u32, tr: bool) -> u32 {
    if (tr) { return si + b * rv + a4; }
    return si + (4u * a4) * rv + b / 4u;
}

// `row_block` for the four columns 4·cv … 4·cv + 3 of a row at once, when r is a multiple of 4
// (the columns then belong to one trajectory and every operand is a vec4 at an aligned offset):
// the loads of a row block are independent and few (r/4 of C, r of S), where `row_block` waits
// on 2r dependent scalar loads per column. Each lane sums in the same order as `row_block`.
fn row_block4(row: u32, cv: u32, co: u32, c_st: bool, so: u32, s_st: bool, tr_s: bool) -> vec4<f32> {
    let at = block_at(row, cv * 4u, co, so);
    let ci = at.x;
    let si = at.y;
    let b = at.z;
    let rv = p.r / 4u;
    var acc = vec4<f32>(0.0);
    for (var a4 = 0u; a4 < rv; a4++) {
        acc = mul_add4(acc, ld4(c_st, ci + a4), s_block(s_at(si, b, a4, rv, tr_s), rv, s_st, tr_s));
    }
    return acc;
}

// `row_block4` for the eight columns 8·q … 8·q + 7 of a row (columns 0 and 1 of the result: the
// vec4s 2q and 2q + 1), when r is a multiple of 8: the C loads are shared by both halves, and a
// phase needs half the tasks. Each lane sums in the same order as `row_block`.
fn row_block8(row: u32, q: u32, co: u32, c_st: bool, so: u32, s_st: bool, tr_s: bool) -> mat2x4<f32> {
    let at = block_at(row, q * 8u, co, so);
    let ci = at.x;
    let si = at.y;
    let b = at.z;
    let rv = p.r / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    for (var a4 = 0u; a4 < rv; a4++) {
        let x = ld4(c_st, ci + a4);
        acc0 = mul_add4(acc0, x, s_block(s_at(si, b, a4, rv, tr_s), rv, s_st, tr_s));
        acc1 = mul_add4(acc1, x, s_block(s_at(si, b + 4u, a4, rv, tr_s), rv, s_st, tr_s));
    }
    return mat2x4<f32>(acc0, acc1);
}

fn gidx(pack: u32, t: u32) -> u32 {
    return (p.pack0 + pack) * p.t + t;
}

@compute @workgroup_size(256)
fn batched(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let pack = wid.x;
    base = pack * p.ws;
    let r = p.r;
    let rr = r * r;
    let tcount = p.t;
    let tiles = diag_tiles();
    let cpv = p.cp / 4u;
    // r a multiple of 4: the row-block phases work on vec4s (nv of them per row)
    let v4 = r % 4u == 0u;
    // r a multiple of 8: ∇_A and ∇_B two vec4s a thread
    let v8 = r % 8u == 0u;
    let nv = p.tr / 4u;
    let mx = max(p.d, p.k);
    let av = p.wa / 4u;
    let bv = p.wb / 4u;
    let xv = p.wx / 4u;
    let yv = p.wy / 4u;
    if (tid < MAXT) {
        let g = gidx(pack, tid);
        var ok = 0u;
        if (tid < tcount && g < p.nb) {
            if (rp[g * 8u + 4u] == 0.0) { ok = 1u; }
        }
        alive[tid] = ok;
        sing[tid] = 0u;
        if (tid < tcount && g < p.nb) {
            wrun[tid] = vec4<f32>(rp[g * 8u], rp[g * 8u + 2u], rp[g * 8u + 3u], 0.0);
        }
    }
    pack_in(tid);
    sync();
    var nrec = 0u;
    for (var it = 0u; it <= p.nsteps; it++) {
        let step = p.step0 + it;
        let check = it > 0u || p.first_new == 1u;
        let recd = check && (step % p.rec_every == 0u || step == p.last_step);
        let need_k = p.precond == 1u;
        // (a) Q = BBᵀ, K = AᵀA, the offset Grams E = B0Bᵀ (k) and F = AᵀSA0 (d); X = Σ̂A
        let nx = ((p.d + p.rb - 1u) / p.rb) * (p.cp / 8u);
        var ngram = tiles;
        if (need_k) { ngram += tiles; }
        var noff = 0u;
        if (p.any_offset == 1u) { noff = 2u * tiles; }
        for (var e = tid; e < nx + ngram + noff; e += WG) {
            if (e < nx) {
                product(e, p.d, p.d, p.o_sig, av, xv);
            } else if (e < nx + tiles) {
                gram_tile(diag_tile(e - nx), p.k, bv, false, bv, p.wq, 0u, 0u);
            } else if (e < nx + ngram) {
                gram_tile(diag_tile(e - nx - tiles), p.d, av, false, av, p.wk, 0u, 0u);
            } else if (e < nx + ngram + tiles) {
                gram_tile(diag_tile(e - nx - ngram), p.k, p.ob0 / 4u, true, bv, p.oe, 1u, 0u);
            } else {
                gram_tile(diag_tile(e - nx - ngram - tiles), p.d, p.osa0 / 4u, true, av, p.of_, 1u, 0u);
            }
        }
        if (p.any_offset == 1u) {
            storageBarrier(); // E and F live in storage in both variants
        }
        sync();
        // (b) P = AᵀX; Y = G Bᵀ (+ SA0·E for offset runs)
        let ny = ((p.d + p.rb - 1u) / p.rb) * (p.cp / 8u);
        for (var e = tid; e < tiles + ny; e += WG) {
            if (e < tiles) {
                gram_tile(diag_tile(e), p.d, av, false, xv, p.wp, 0u, 0u);
            } else {
                product(e - tiles, p.d, p.k, p.o_gt, bv, yv);
            }
        }
        sync();
        if (p.any_offset == 1u) {
            for (var e = tid; e < p.d * p.tr; e += WG) {
                let row = e / p.tr;
                let c = e % p.tr;
                let o = p.wy + row * p.cp + c;
                stw(o, ldw(o) + row_block(row, c, p.osa0, true, p.oe, true, false));
            }
            sync();
        }
        // (c) the trace parts tr(AᵀY) per column, in TRG row groups (thread (group, column)),
        // and the rows of tr(PQ) (thread per column)
        if (tid < TRG * p.cp) {
            let c = tid % p.cp;
            var acc = 0.0;
            // four rows a turn (their loads in flight together), summed in row order
            var i = tid / p.cp;
            for (; i + 3u * TRG < p.d; i += 4u * TRG) {
                let o = p.wa + i * p.cp + c;
                let u = p.wy + i * p.cp + c;
                let s = TRG * p.cp;
                let a0 = ldw(o);
                let a1 = ldw(o + s);
                let a2 = ldw(o + 2u * s);
                let a3 = ldw(o + 3u * s);
                let y0 = ldw(u);
                let y1 = ldw(u + s);
                let y2 = ldw(u + 2u * s);
                let y3 = ldw(u + 3u * s);
                acc += a0 * y0;
                acc += a1 * y1;
                acc += a2 * y2;
                acc += a3 * y3;
            }
            for (; i < p.d; i += TRG) {
                acc += ldw(p.wa + i * p.cp + c) * ldw(p.wy + i * p.cp + c);
            }
            wtr[tid] = acc;
        }
        if (tid < p.tr) {
            let t = tid / r;
            let a = tid % r;
            var s = 0.0;
            for (var b = 0u; b < r; b++) {
                s += ldw(p.wp + t * rr + a * r + b) * ldw(p.wq + t * rr + b * r + a);
            }
            wpq[tid] = s;
        }
        workgroupBarrier();
        // (d) loss and the divergence check
        if (tid < tcount) {
            let g = gidx(pack, tid);
            var pq = 0.0;
            var trace = 0.0;
            for (var a = 0u; a < r; a++) {
                pq += wpq[tid * r + a];
                let c = tid * r + a;
                var tc = 0.0;
                for (var h = 0u; h < TRG; h++) { tc += wtr[h * p.cp + c]; }
                trace += tc;
            }
            if (g < p.nb) {
                let loss = 0.5 * pq - trace + wrun[tid].y;
                wl[tid] = loss;
                if (check && alive[tid] == 1u) {
                    if (nonfinite(loss)) {
                        alive[tid] = 0u;
                        rp[g * 8u + 4u] = 2.0;
                        rp[g * 8u + 5u] = f32(step);
                    } else if (loss > wrun[tid].z) {
                        alive[tid] = 0u;
                        rp[g * 8u + 4u] = 1.0;
                        rp[g * 8u + 5u] = f32(step);
                    }
                }
                rp[g * 8u + 7u] = loss;
            }
        }
        sync();
        if (recd) {
            record_state(tid, pack, nrec);
            nrec += 1u;
        }
        if (it == p.nsteps) { break; }
        // (e) ∇_A = X·Q − Y, into Y (four columns a thread when r is a multiple of 4)
        if (v8) {
            for (var e = tid; e < p.d * nv / 2u; e += WG) {
                let row = e / (nv / 2u);
                let q = e % (nv / 2u);
                let o = yv + row * cpv + 2u * q;
                let m = row_block8(row, q, p.wx, false, p.wq, false, false);
                stw4(o, m[0] - ldw4(o));
                stw4(o + 1u, m[1] - ldw4(o + 1u));
            }
        } else if (v4) {
            for (var e = tid; e < p.d * nv; e += WG) {
                let row = e / nv;
                let cv = e % nv;
                let o = yv + row * cpv + cv;
                stw4(o, row_block4(row, cv, p.wx, false, p.wq, false, false) - ldw4(o));
            }
        } else {
            for (var e = tid; e < p.d * p.tr; e += WG) {
                let row = e / p.tr;
                let c = e % p.tr;
                let o = p.wy + row * p.cp + c;
                stw(o, row_block(row, c, p.wx, false, p.wq, false, false) - ldw(o));
            }
        }
        sync();
        // (f) Z = (AᵀG)ᵀ into X (the old A), + B0·Fᵀ for offset runs
        let nz = ((p.k + p.rb - 1u) / p.rb) * (p.cp / 8u);
        for (var e = tid; e < nz; e += WG) {
            product(e, p.k, p.d, p.o_g, av, xv);
        }
        sync();
        // (g) ∇_B (Bc layout) = B·P − Z (− B0·Fᵀ), into X
        if (v8) {
            for (var e = tid; e < p.k * nv / 2u; e += WG) {
                let row = e / (nv / 2u);
                let q = e % (nv / 2u);
                var m = row_block8(row, q, p.wb, false, p.wp, false, true);
                if (p.any_offset == 1u) {
                    m -= row_block8(row, q, p.ob0, true, p.of_, true, false);
                }
                let o = xv + row * cpv + 2u * q;
                stw4(o, m[0] - ldw4(o));
                stw4(o + 1u, m[1] - ldw4(o + 1u));
            }
        } else if (v4) {
            for (var e = tid; e < p.k * nv; e += WG) {
                let row = e / nv;
                let cv = e % nv;
                var s = row_block4(row, cv, p.wb, false, p.wp, false, true);
                if (p.any_offset == 1u) {
                    s -= row_block4(row, cv, p.ob0, true, p.of_, true, false);
                }
                let o = xv + row * cpv + cv;
                stw4(o, s - ldw4(o));
            }
        } else {
            for (var e = tid; e < p.k * p.tr; e += WG) {
                let row = e / p.tr;
                let c = e % p.tr;
                var s = row_block(row, c, p.wb, false, p.wp, false, true);
                if (p.any_offset == 1u) {
                    s -= row_block(row, c, p.ob0, true, p.of_, true, false);
                }
                let o = p.wx + row * p.cp + c;
                stw(o, s - ldw(o));
            }
        }
        sync();
        if (p.precond == 1u) {
            // (Q + λI)^-1 and (AᵀA + λI)^-1 by Gauss–Jordan in place, one thread per row.
            let mine = tid < 2u * p.tr;
            var mo = p.wq;
            var t = 0u;
            var row = 0u;
            if (mine) {
                if (tid >= p.tr) { mo = p.wk; }
                t = (tid % p.tr) / r;
                row = tid % r;
                let g = gidx(pack, t);
                let o = mo + t * rr + row * r + row;
                stw(o, ldw(o) + rp[g * 8u + 1u]);
            }
            sync();
            for (var pv = 0u; pv < r; pv++) {
                if (mine && row != pv) {
                    let o = mo + t * rr;
                    var piv = ldw(o + pv * r + pv);
                    if (!(piv > 0.0) || nonfinite(piv)) {
                        sing[t] = 1u;
                        piv = 1.0;
                    }
                    let f = ldw(o + row * r + pv);
                    for (var j = 0u; j < r; j++) {
                        if (j != pv) { stw(o + row * r + j, ldw(o + row * r + j) - f * ldw(o + pv * r + j) / piv); }
                    }
                    stw(o + row * r + pv, -f / piv);
                }
                sync();
                if (mine && row == pv) {
                    let o = mo + t * rr;
                    var piv = ldw(o + pv * r + pv);
                    if (!(piv > 0.0) || nonfinite(piv)) {
                        sing[t] = 1u;
                        piv = 1.0;
                    }
                    for (var j = 0u; j < r; j++) {
                        if (j != pv) { stw(o + pv * r + j, ldw(o + pv * r + j) / piv); }
                    }
                    stw(o + pv * r + pv, 1.0 / piv);
                }
                sync();
            }
            if (tid < tcount) {
                let g = gidx(pack, tid);
                if (sing[tid] == 1u && alive[tid] == 1u && g < p.nb) {
                    alive[tid] = 0u;
                    rp[g * 8u + 4u] = 3.0;
                    rp[g * 8u + 5u] = f32(step + 1u);
                }
            }
            workgroupBarrier();
        }
        // (h) A ← A − η ∇_A [Q+λI]^-1,  B ← B − η [AᵀA+λI]^-1 ∇_B
        if (v4) {
            for (var e = tid; e < (p.d + p.k) * nv; e += WG) {
                var row = e / nv;
                let cv = e % nv;
                let t = (cv * 4u) / r;
                if (alive[t] == 0u) { continue; }
                let eta = wrun[t].x;
                if (row < p.d) {
                    var s = ldw4(yv + row * cpv + cv);
                    if (p.precond == 1u) {
                        s = row_block4(row, cv, p.wy, false, p.wq, false, false);
                    }
                    let o = av + row * cpv + cv;
                    stw4(o, ldw4(o) - eta * s);
                } else {
                    row -= p.d;
                    var s = ldw4(xv + row * cpv + cv);
                    if (p.precond == 1u) {
                        s = row_block4(row, cv, p.wx, false, p.wk, false, true);
                    }
                    let o = bv + row * cpv + cv;
                    stw4(o, ldw4(o) - eta * s);
                }
            }
        }
        for (var e = tid; e < select((p.d + p.k) * p.tr, 0u, v4); e += WG) {
            var row = e / p.tr;
            let c = e % p.tr;
            let t = c / r;
            if (alive[t] == 0u) { continue; }
            let eta = wrun[t].x;
            if (row < p.d) {
                var s = ldw(p.wy + row * p.cp + c);
                if (p.precond == 1u) {
                    s = row_block(row, c, p.wy, false, p.wq, false, false);
                }
                let o = p.wa + row * p.cp + c;
                stw(o, ldw(o) - eta * s);
            } else {
                row -= p.d;
                var s = ldw(p.wx + row * p.cp + c);
                if (p.precond == 1u) {
                    s = row_block(row, c, p.wx, false, p.wk, false, true);
                }
                let o = p.wb + row * p.cp + c;
                stw(o, ldw(o) - eta * s);
            }
        }
        sync();
    }
    pack_out(tid);
}

// Recording the state at the start of a step: the loss into the record row, A and Bᵀ into the
// snapshot slot (read only; A and B change after the next barriers).
fn record_state(tid: u32, pack: u32, nrec: u32) {
    let r = p.r;
    let r4 = (r + 3u) / 4u;
    let tcount = p.t;
    if (tid < tcount) {
        let g = gidx(pack, tid);
        if (g < p.nb) { rec[(nrec * p.nb + g) * p.rstride] = wl[tid]; }
    }
    let per = (p.d + p.k) * r4;
    for (var e = tid; e < tcount * per; e += WG) {
        let t = e / per;
        let f = e % per;
        if (gidx(pack, t) >= p.nb) { continue; }
        let row = f / r4;
        let h = 4u * (f % r4);
        var o = p.wa + row * p.cp + t * r + h;
        if (row >= p.d) { o = p.wb + (row - p.d) * p.cp + t * r + h; }
        var v = vec4<f32>(0.0);
        for (var u = 0u; u < 4u; u++) {
            if (h + u < r) { v[u] = ldw(o + u); }
        }
        snap[(nrec * p.snt + pack * tcount + t) * (p.sf / 4u) + f] = v;
    }
}

// ---- Record metrics: one workgroup per (trajectory of the segment, record slot) ----

// Workgroup memory of the metrics: while the Grams are formed, a chunk of rows of X (a factor,
// r columns) and of its residual R = X − basis·M side by side (2·MCH floats), then M = basisᵀX
// (r*×r, at MM); afterwards the eigen work of `align_metrics` where its 7 r×r blocks fit.
const MCH: u32 = 1024u;
const MM: u32 = 2048u;
const MW: u32 = 3072u;
var<workgroup> mw: array<f32, 3072>;
var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

fn sget(i: u32) -> f32 { return snap[i >> 2u][i & 3u]; }
fn sset(i: u32, v: f32) { snap[i >> 2u][i & 3u] = v; }

// element (row, q) of a snapshot at vec4 offset so (rows of r4 vec4s)
fn sx(so: u32, r4: u32, row: u32, q: u32) -> f32 {
    return snap[so + row * r4 + (q >> 2u)][q & 3u];
}

// XᵀX and RᵀR of one factor (n rows from row0 of the snapshot at vec4 offset so; basis (n×r*)
// in `big` at bo), into `snap` at float offsets fx and fr. Each sum over the rows is split over
// groups of threads (rows i ≡ h mod the group count) whose partial sums are then added in a fixed
// order, so that all the workgroup's threads work and no thread walks all n rows.
fn factor_grams(tid: u32, so: u32, row0: u32, n: u32, bo: u32, fx: u32, fr: u32) {
    let r = p.r;
    let rs = p.rs;
    let r4 = (r + 3u) / 4u;
    // M = basisᵀX (r*×r at MM): thread (output o, row group h), partials at MM + h·nm + o
    let nm = rs * r;
    let gm = max(1u, WG / nm);
    for (var e = tid; e < nm * gm; e += WG) {
        let o = e % nm;
        let h = e / nm;
        let q = o / r;
        let a = o % r;
        var s = 0.0;
        for (var i = h; i < n; i += gm) {
            s += big[bo + i * rs + q] * sx(so, r4, row0 + i, a);
        }
        mw[MM + e] = s;
    }
    workgroupBarrier();
    // each output's partials added into group 0's slot by the thread that owns it
    for (var o = tid; o < nm; o += WG) {
        var s = mw[MM + o];
        for (var h = 1u; h < gm; h++) { s += mw[MM + h * nm + o]; }
        mw[MM + o] = s;
    }
    workgroupBarrier();
    // the Grams: thread (entry o of r×r, row group h) over the rows of each chunk
    let ch = MCH / r;
    let ng = r * r;
    let gg = max(1u, WG / ng);
    var gx = vec4<f32>(0.0);
    var gr = vec4<f32>(0.0);
    for (var i0 = 0u; i0 < n; i0 += ch) {
        let rows = min(ch, n - i0);
        for (var e = tid; e < rows * r; e += WG) {
            let i = i0 + e / r;
            let a = e % r;
            let x = sx(so, r4, row0 + i, a);
            var res = x;
            for (var q = 0u; q < rs; q++) {
                res -= big[bo + i * rs + q] * mw[MM + q * r + a];
            }
            mw[e] = x;
            mw[MCH + e] = res;
        }
        workgroupBarrier();
        for (var m = 0u; m < 4u; m++) {
            let e = tid + m * WG;
            if (e < ng * gg) {
                let o = e % ng;
                let a = o / r;
                let b = o % r;
                var s1 = 0.0;
                var s2 = 0.0;
                for (var i = e / ng; i < rows; i += gg) {
                    s1 += mw[i * r + a] * mw[i * r + b];
                    s2 += mw[MCH + i * r + a] * mw[MCH + i * r + b];
                }
                gx[m] += s1;
                gr[m] += s2;
            }
        }
        workgroupBarrier();
    }
    // the row groups' partials (Gram of X at 0, of R at MCH), then their sums
    for (var m = 0u; m < 4u; m++) {
        let e = tid + m * WG;
        if (e < ng * gg) {
            mw[e] = gx[m];
            mw[MCH + e] = gr[m];
        }
    }
    workgroupBarrier();
    for (var o = tid; o < ng; o += WG) {
        var s1 = 0.0;
        var s2 = 0.0;
        for (var h = 0u; h < gg; h++) {
            s1 += mw[h * ng + o];
            s2 += mw[MCH + h * ng + o];
        }
        sset(fx + o, s1);
        sset(fr + o, s2);
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn batched_metrics(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = wid.x;
    let slot = wid.y;
    let g = p.pack0 * p.t + x;
    if (g >= p.nb) { return; }
    let r = p.r;
    let rr = r * r;
    let r4 = (r + 3u) / 4u;
    let so = (slot * p.snt + x) * (p.sf / 4u);
    let rowo = (slot * p.nb + g) * p.rstride;
    let go = so * 4u + (p.d + p.k) * r4 * 4u;
    factor_grams(tid, so, 0u, p.d, p.o_u, go, go + 2u * rr);
    workgroupBarrier();
    factor_grams(tid, so, p.d, p.k, p.o_v, go + rr, go + 3u * rr);
    // risk and error over the d×k entries; the entry (i, j) advances by WG without a division
    let offset = rp[g * 8u + 6u] != 0.0;
    let bo = g * (p.sf / 4u);
    let n = p.d * p.k;
    let si = WG / p.k;
    let sj = WG % p.k;
    var rk = 0.0;
    var er = 0.0;
    var i = tid / p.k;
    var j = tid % p.k;
    for (var e = tid; e < n; e += WG) {
        var ab = 0.0;
        for (var h = 0u; h < r4; h++) {
            ab += dot(snap[so + i * r4 + h], snap[so + (p.d + j) * r4 + h]);
        }
        let e1 = ab - big[p.o_del + e];
        var e2 = e1;
        if (offset) {
            var ab0 = 0.0;
            for (var h = 0u; h < r4; h++) {
                ab0 += dot(base0[bo + i * r4 + h], base0[bo + (p.d + j) * r4 + h]);
            }
            e2 -= ab0;
        }
        rk += e2 * e2;
        er += e1 * e1;
        i += si;
        j += sj;
        if (j >= p.k) {
            j -= p.k;
            i += 1u;
        }
    }
    red[tid] = rk;
    red2[tid] = er;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            red[tid] += red[tid + s];
            red2[tid] += red2[tid + s];
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        rec[rowo + 1u] = 0.5 * red[0];
        rec[rowo + 2u] = sqrt(red2[0]);
    }
    if (r > SMAX) {
        ssync();
        align_metrics(tid, go, rowo);
    }
    if (p.full == 1u) {
        let fo = rowo + 5u + r;
        for (var e = tid; e < (p.d + p.k) * r; e += WG) {
            var v = 0.0;
            if (e < p.d * r) {
                v = sx(so, r4, e / r, e % r);
            } else {
                let fb = e - p.d * r;
                v = sx(so, r4, p.d + fb % p.k, fb / p.k);
            }
            rec[fo + e] = v;
        }
    }
}

// ---- Alignment metrics from the Grams (inside `batched_metrics`, one workgroup a record) ----

var<workgroup> jrot: array<vec4<f32>, 16>; // a round's rotations: (c, s, p, q)
var<workgroup> wflag: u32;
var<workgroup> wcols: array<u32, 32>;
var<workgroup> wkeep: u32;
var<workgroup> wbad: u32;  // the last `sin_theta`'s factor was 0 or not finite

// The eigen work's matrices: in workgroup memory (mw) when its blocks fit, else in the slot's
// scratch (storage); the choice is uniform over the workgroup.
var<private> mwg: bool;
fn mget(i: u32) -> f32 {
    if (mwg) { return mw[i]; }
    return sget(i);
}
fn mset(i: u32, v: f32) {
    if (mwg) { mw[i] = v; } else { sset(i, v); }
}

// (x_i, x_j) ← (c·x_i − s·x_j, s·x_i + c·x_j): one pair of a Jacobi rotation's update.
fn rotate(i: u32, j: u32, c: f32, sn: f32) {
    let xi = mget(i);
    let xj = mget(j);
    mset(i, c * xi - sn * xj);
    mset(j, sn * xi + c * xj);
}

// A phase boundary of the eigen work.
fn ssync() {
    storageBarrier();
    workgroupBarrier();
}

// Eigenvalues (left on the diagonal) and, when `vecs`, eigenvectors (columns of the n×n matrix
// at v) of the symmetric n×n matrix at a (row stride n, offsets as `mget`): parallel
// cyclic Jacobi, the n/2 disjoint rotations of a round (round-robin order) at once; sweeps until
// no pair needs a rotation (|a_pq| ≤ 1e-7·√|a_pp·a_qq|, which keeps small eigenvalues to relative
// accuracy), at most 16. n ≤ 32.
fn jacobi(tid: u32, a: u32, v: u32, n: u32, vecs: bool) {
    if (vecs) {
        for (var i = tid; i < n * n; i += WG) { mset(v + i, select(0.0, 1.0, i % (n + 1u) == 0u)); }
    }
    let nn = n + (n & 1u); // players, with a dummy one when n is odd
    let half = nn / 2u;
    for (var sweep = 0u; sweep < 16u; sweep++) {
        workgroupBarrier();
        if (tid == 0u) { wflag = 0u; }
        workgroupBarrier();
        for (var round = 0u; round + 1u < nn; round++) {
            // (1) the rotation of each pair (i-th from each end of the circle)
            if (tid < half) {
                var x = 0u;
                if (tid > 0u) { x = 1u + (tid - 1u + round) % (nn - 1u); }
                let y = 1u + (nn - 2u - tid + round) % (nn - 1u);
                let pp = min(x, y);
                let q = max(x, y);
                var c = 1.0;
                var sn = 0.0;
                if (q < n) {
                    let apq = mget(a + pp * n + q);
                    let app = mget(a + pp * n + pp);
                    let aqq = mget(a + q * n + q);
                    if (apq * apq > 1e-14 * abs(app * aqq)) {
                        wflag = 1u;
                        let th = (aqq - app) / (2.0 * apq);
                        var t = 1.0;
                        if (abs(th) >= 1e15) {
                            t = 0.5 / th;
                        } else if (th != 0.0) {
                            t = sign(th) / (abs(th) + sqrt(th * th + 1.0));
                        }
                        c = 1.0 / sqrt(t * t + 1.0);
                        sn = t * c;
                    }
                }
                jrot[tid] = vec4<f32>(c, sn, f32(pp), f32(min(q, n - 1u)));
            }
            workgroupBarrier();
            // (2) columns: A ← A·J, V ← V·J
            let items = n * half;
            for (var e = tid; e < 2u * items; e += WG) {
                let m = select(a, v, e >= items);
                if (e >= items && !vecs) { continue; }
                let f = e % items;
                let rot = jrot[f / n];
                if (rot.y == 0.0) { continue; }
                let k = f % n;
                rotate(m + k * n + u32(rot.z), m + k * n + u32(rot.w), rot.x, rot.y);
            }
            ssync();
            // (3) rows: A ← Jᵀ·A
            for (var f = tid; f < items; f += WG) {
                let rot = jrot[f / n];
                if (rot.y == 0.0) { continue; }
                let k = f % n;
                rotate(a + u32(rot.z) * n + k, a + u32(rot.w) * n + k, rot.x, rot.y);
            }
            ssync();
        }
        if (workgroupUniformLoad(&wflag) == 0u) { break; }
    }
}

// index of the largest diagonal entry of the n×n matrix at a not in `taken`
fn next_largest(a: u32, n: u32, taken: u32) -> u32 {
    var best = n;
    var bv = 0.0;
    for (var i = 0u; i < n; i++) {
        if ((taken & (1u << i)) != 0u) { continue; }
        let x = mget(a + i * n + i);
        if (best == n || x > bv) {
            best = i;
            bv = x;
        }
    }
    return best;
}

// sin θ between G's top-r* basis and the top-m subspace of a factor X from k = XᵀX (at kg) and
// rg = RᵀR (at rgo): with k = W Λ Wᵀ, sin² θ is the largest eigenvalue of
// Λ_m^{-1/2} W_mᵀ rg W_m Λ_m^{-1/2} (directions with eigenvalue below 1e-6 of the largest left
// out). −1 when X = 0 or a Gram is not finite. Work blocks (r×r): Λ is left on m1's diagonal
// and W in m2 (σ(AB) reuses them for AᵀA); m3 holds rg·W_m, then the inner matrix goes to rgo.
fn sin_theta(tid: u32, kg: u32, rgo: u32, m1: u32, m2: u32, m3: u32, mm: u32) -> f32 {
    let r = p.r;
    let rr = r * r;
    workgroupBarrier();
    if (tid == 0u) {
        var tr = 0.0;
        var bad = 0u;
        for (var i = 0u; i < rr; i++) {
            if (nonfinite(mget(kg + i)) || nonfinite(mget(rgo + i))) { bad = 1u; }
        }
        for (var i = 0u; i < r; i++) { tr += mget(kg + i * r + i); }
        if (!(tr > 0.0)) { bad = 1u; }
        wbad = bad;
    }
    for (var i = tid; i < rr; i += WG) {
        mset(m1 + i, 0.5 * (mget(kg + i) + mget(kg + (i % r) * r + i / r)));
    }
    ssync();
    if (workgroupUniformLoad(&wbad) == 1u) { return -1.0; }
    jacobi(tid, m1, m2, r, true);
    // the top-m eigenpairs, descending, above the noise floor
    if (tid == 0u) {
        var taken = 0u;
        var keep = 0u;
        var top = 0.0;
        for (var a = 0u; a < mm; a++) {
            let i = next_largest(m1, r, taken);
            let lam = mget(m1 + i * r + i);
            if (a == 0u) { top = lam; }
            if (a > 0u && !(lam > 1e-6 * top)) { break; }
            taken |= 1u << i;
            wcols[a] = i;
            keep += 1u;
        }
        wkeep = keep;
    }
    let keep = workgroupUniformLoad(&wkeep);
    // m3 (r×keep) = sym(rg)·W_m Λ_m^{-1/2}; then the inner matrix (keep×keep) over rg
    for (var e = tid; e < r * keep; e += WG) {
        let i = e / keep;
        let b = wcols[e % keep];
        var t = 0.0;
        for (var j = 0u; j < r; j++) {
            t += 0.5 * (mget(rgo + i * r + j) + mget(rgo + j * r + i)) * mget(m2 + j * r + b);
        }
        mset(m3 + e, t / sqrt(max(mget(m1 + b * r + b), 1e-38)));
    }
    ssync();
    for (var e = tid; e < keep * keep; e += WG) {
        let a = e / keep;
        let ia = wcols[a];
        var s = 0.0;
        for (var i = 0u; i < r; i++) { s += mget(m2 + i * r + ia) * mget(m3 + i * keep + e % keep); }
        mset(rgo + e, s / sqrt(max(mget(m1 + ia * r + ia), 1e-38)));
    }
    ssync();
    jacobi(tid, rgo, rgo, keep, false);
    var big_ev = 0.0;
    for (var a = 0u; a < keep; a++) { big_ev = max(big_ev, mget(rgo + a * keep + a)); }
    return min(sqrt(max(big_ev, 0.0)), 1.0);
}

// o = X·Y for the r×r matrices at x, y (offsets as `mget`); Y read as is (mode 0), transposed
// (1) or symmetrised, (Y + Yᵀ)/2 (2).
fn mat_r(tid: u32, x: u32, y: u32, o: u32, mode: u32) {
    let r = p.r;
    for (var e = tid; e < r * r; e += WG) {
        let i = e / r;
        let j = e % r;
        var s = 0.0;
        for (var a = 0u; a < r; a++) {
            var yv = mget(y + a * r + j);
            if (mode == 1u) {
                yv = mget(y + j * r + a);
            } else if (mode == 2u) {
                yv = 0.5 * (yv + mget(y + j * r + a));
            }
            s += mget(x + i * r + a) * yv;
        }
        mset(o + e, s);
    }
    ssync();
}

// Record fields 3.. of the row at rowo: sin θ_A, sin θ_B, σ(AB), from the four Grams at float
// offset gs of `snap` (copied into workgroup memory when the work fits there).
fn align_metrics(tid: u32, gs: u32, rowo: u32) {
    let r = p.r;
    let rr = r * r;
    mwg = 7u * rr <= MW;
    var ka = gs;
    if (mwg) {
        for (var i = tid; i < 4u * rr; i += WG) { mw[i] = sget(gs + i); }
        ka = 0u;
    }
    ssync();
    let kb = ka + rr;
    let ra = ka + 2u * rr;
    let rb = ka + 3u * rr;
    let m1 = ka + 4u * rr;
    let m2 = ka + 5u * rr;
    let m3 = ka + 6u * rr;
    let mm = min(r, p.rs);
    let sb = sin_theta(tid, kb, rb, m1, m2, m3, mm);
    let sa = sin_theta(tid, ka, ra, m1, m2, m3, mm);
    if (tid == 0u) {
        rec[rowo + 3u] = sa;
        rec[rowo + 4u] = sb;
    }
    // σ(AB): square roots of the eigenvalues of H·BBᵀ·H with H = (AᵀA)^{1/2} = W Λ₊^{1/2} Wᵀ
    // (W in m2, Λ on m1's diagonal, left by sin θ_A); 0 when A = 0 (the test is the uniform
    // flag rather than `sa`, so that the barriers below stay in uniform control flow)
    if (workgroupUniformLoad(&wbad) == 1u) {
        for (var i = tid; i < r; i += WG) { rec[rowo + 5u + i] = 0.0; }
        return;
    }
    // S = W Λ₊^{1/2} into ra, H = S·Wᵀ into m3, T = H·sym(BBᵀ) into ra, C = T·H into rb (RᵀR and
    // SᵀS are used by now)
    for (var e = tid; e < rr; e += WG) {
        mset(ra + e, mget(m2 + e) * sqrt(max(mget(m1 + (e % r) * (r + 1u)), 0.0)));
    }
    ssync();
    mat_r(tid, ra, m2, m3, 1u);
    mat_r(tid, m3, kb, ra, 2u);
    mat_r(tid, ra, m3, rb, 0u);
    jacobi(tid, rb, rb, r, false);
    if (tid == 0u) {
        var taken = 0u;
        for (var a = 0u; a < r; a++) {
            let i = next_largest(rb, r, taken);
            taken |= 1u << i;
            rec[rowo + 5u + a] = sqrt(max(mget(rb + i * r + i), 0.0));
        }
    }
}

// ---- The same for r ≤ 8 (`batched_align`): one thread a record, its matrices in private
// memory, no barriers; after `batched_metrics` has left the Grams in the slot's scratch. The
// sweeps are capped at 10 (an 8×8 Jacobi converges in 5–7) so that one invocation stays within
// a software adapter's loop budget.

const SMAX: u32 = 8u;

// `rotate` on a private matrix
fn rotate_s(m: ptr<function, array<f32, 64>>, i: u32, j: u32, c: f32, sn: f32) {
    let xi = (*m)[i];
    let xj = (*m)[j];
    (*m)[i] = c * xi - sn * xj;
    (*m)[j] = sn * xi + c * xj;
}

fn jacobi_s(a: ptr<function, array<f32, 64>>, v: ptr<function, array<f32, 64>>, n: u32, vecs: bool) {
    if (vecs) {
        for (var i = 0u; i < n * n; i++) { (*v)[i] = select(0.0, 1.0, i % (n + 1u) == 0u); }
    }
    for (var sweep = 0u; sweep < 10u; sweep++) {
        var rotated = false;
        for (var pp = 0u; pp + 1u < n; pp++) {
            for (var q = pp + 1u; q < n; q++) {
                let apq = (*a)[pp * n + q];
                let app = (*a)[pp * n + pp];
                let aqq = (*a)[q * n + q];
                if (!(apq * apq > 1e-14 * abs(app * aqq))) { continue; }
                rotated = true;
                let th = (aqq - app) / (2.0 * apq);
                var t = 1.0;
                if (abs(th) >= 1e15) {
                    t = 0.5 / th;
                } else if (th != 0.0) {
                    t = sign(th) / (abs(th) + sqrt(th * th + 1.0));
                }
                let c = 1.0 / sqrt(t * t + 1.0);
                let sn = t * c;
                for (var k = 0u; k < n; k++) { rotate_s(a, k * n + pp, k * n + q, c, sn); }
                for (var k = 0u; k < n; k++) { rotate_s(a, pp * n + k, q * n + k, c, sn); }
                if (vecs) {
                    for (var k = 0u; k < n; k++) { rotate_s(v, k * n + pp, k * n + q, c, sn); }
                }
            }
        }
        if (!rotated) { break; }
    }
}

// index of the largest diagonal entry of the n×n matrix not in `taken`
fn next_largest_s(a: ptr<function, array<f32, 64>>, n: u32, taken: u32) -> u32 {
    var best = n;
    var bv = 0.0;
    for (var i = 0u; i < n; i++) {
        if ((taken & (1u << i)) != 0u) { continue; }
        let x = (*a)[i * n + i];
        if (best == n || x > bv) {
            best = i;
            bv = x;
        }
    }
    return best;
}

// The eigenpairs of sym(XᵀX) at float offset kg of `snap`: Λ on the diagonal of m1, W in m2;
// false when XᵀX or the residual Gram at rgo has a non-finite entry, or XᵀX is 0.
fn eig_s(kg: u32, rgo: u32, m1: ptr<function, array<f32, 64>>, m2: ptr<function, array<f32, 64>>) -> bool {
    let r = p.r;
    var tr = 0.0;
    var bad = false;
    for (var i = 0u; i < r * r; i++) {
        let x = sget(kg + i);
        if (nonfinite(x) || nonfinite(sget(rgo + i))) { bad = true; }
        (*m1)[i] = 0.5 * (x + sget(kg + (i % r) * r + i / r));
    }
    for (var i = 0u; i < r; i++) { tr += sget(kg + i * r + i); }
    if (bad || !(tr > 0.0)) { return false; }
    jacobi_s(m1, m2, r, true);
    return true;
}

// `sin_theta` with k = XᵀX and rg = RᵀR at float offsets kg, rgo of `snap`; Λ left on the
// diagonal of m1 and W in m2; m3 is work.
fn sin_theta_s(kg: u32, rgo: u32, m1: ptr<function, array<f32, 64>>, m2: ptr<function, array<f32, 64>>, m3: ptr<function, array<f32, 64>>, mm: u32) -> f32 {
    let r = p.r;
    if (!eig_s(kg, rgo, m1, m2)) { return -1.0; }
    var cols: array<u32, 8>;
    var taken = 0u;
    var keep = 0u;
    var top = 0.0;
    for (var a = 0u; a < mm; a++) {
        let i = next_largest_s(m1, r, taken);
        let lam = (*m1)[i * r + i];
        if (a == 0u) { top = lam; }
        if (a > 0u && !(lam > 1e-6 * top)) { break; }
        taken |= 1u << i;
        cols[a] = i;
        keep += 1u;
    }
    // m3 (keep×keep) = Λ_m^{-1/2} W_mᵀ sym(rg) W_m Λ_m^{-1/2}
    for (var a = 0u; a < keep; a++) {
        for (var b = 0u; b < keep; b++) {
            let ia = cols[a];
            let ib = cols[b];
            var s = 0.0;
            for (var i = 0u; i < r; i++) {
                var t = 0.0;
                for (var j = 0u; j < r; j++) {
                    t += 0.5 * (sget(rgo + i * r + j) + sget(rgo + j * r + i)) * (*m2)[j * r + ib];
                }
                s += (*m2)[i * r + ia] * t;
            }
            let la = max((*m1)[ia * r + ia], 1e-38);
            let lb = max((*m1)[ib * r + ib], 1e-38);
            (*m3)[a * keep + b] = s / sqrt(la * lb);
        }
    }
    jacobi_s(m3, m2, keep, false);
    var big_ev = 0.0;
    for (var a = 0u; a < keep; a++) { big_ev = max(big_ev, (*m3)[a * keep + a]); }
    return min(sqrt(max(big_ev, 0.0)), 1.0);
}

// Three jobs a record, one per z of the dispatch (so that a warp's threads run the same code):
// 0 sin θ_B, 1 sin θ_A, 2 σ(AB) (which solves AᵀA's eigenproblem again rather than wait for
// job 1).
@compute @workgroup_size(64)
fn batched_align(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let slot = gid.y;
    let job = gid.z;
    let g = p.pack0 * p.t + x;
    if (x >= p.snt || g >= p.nb || p.r > SMAX) { return; }
    let r = p.r;
    let rr = r * r;
    let r4 = (r + 3u) / 4u;
    let rowo = (slot * p.nb + g) * p.rstride;
    let ka = (slot * p.snt + x) * p.sf + (p.d + p.k) * r4 * 4u;
    let kb = ka + rr;
    let mm = min(r, p.rs);
    var m1: array<f32, 64>;
    var m2: array<f32, 64>;
    var m3: array<f32, 64>;
    if (job == 0u) {
        rec[rowo + 4u] = sin_theta_s(kb, ka + 3u * rr, &m1, &m2, &m3, mm);
        return;
    }
    if (job == 1u) {
        rec[rowo + 3u] = sin_theta_s(ka, ka + 2u * rr, &m1, &m2, &m3, mm);
        return;
    }
    if (!eig_s(ka, ka + 2u * rr, &m1, &m2)) {
        for (var i = 0u; i < r; i++) { rec[rowo + 5u + i] = 0.0; }
        return;
    }
    // σ(AB): H = W Λ₊^{1/2} Wᵀ into m3, T = H·sym(BBᵀ) into m2 (W is used), C = T·H into m1
    for (var e = 0u; e < rr; e++) {
        let i = e / r;
        let j = e % r;
        var s = 0.0;
        for (var a = 0u; a < r; a++) {
            s += m2[i * r + a] * sqrt(max(m1[a * r + a], 0.0)) * m2[j * r + a];
        }
        m3[e] = s;
    }
    for (var e = 0u; e < rr; e++) {
        let i = e / r;
        let j = e % r;
        var s = 0.0;
        for (var a = 0u; a < r; a++) {
            s += m3[i * r + a] * 0.5 * (sget(kb + a * r + j) + sget(kb + j * r + a));
        }
        m2[e] = s;
    }
    for (var e = 0u; e < rr; e++) {
        let i = e / r;
        let j = e % r;
        var s = 0.0;
        for (var a = 0u; a < r; a++) { s += m2[i * r + a] * m3[a * r + j]; }
        m1[e] = s;
    }
    jacobi_s(&m1, &m2, r, false);
    var taken = 0u;
    for (var a = 0u; a < r; a++) {
        let i = next_largest_s(&m1, r, taken);
        taken |= 1u << i;
        rec[rowo + 5u + a] = sqrt(max(m1[i * r + i], 0.0));
    }
}
