//! The packed f32 GEMM, laid out like BLIS: five loops around a micro-kernel.
//!
//! ```text
//! 0.  pack all of A into Ã: per depth block, MR-row panels, p-major          Ã: m̃ × k
//! 1.  for jc in the block's columns of C, NC at a time      (a rayon task = a block of C)
//! 2.    for pc in 0..k, KC at a time
//!         pack B[pc.., jc..] into B̃: NR-column panels, p-major               B̃: kc × ñc
//! 3.      for ic in the block's rows of C, MC at a time      (Ã's MC × kc block in L2)
//! 4.        for jr in 0..nc, NR at a time                     (B̃'s kc × NR panel in L1)
//! 5.          for ir in 0..mc, MR at a time
//!               micro-kernel: C[ir.., jr..] (MR × NR) ← α·Ã-panel·B̃-panel + β′·C
//! ```
//!
//! β′ is β for the first depth block and 1 after it, so each element of C is summed in a
//! fixed order: p ascending within a depth block, depth blocks one after the other, and
//! nothing else (not the thread count, not where the blocks of C fall) changes it. Panels
//! are padded with zeros to whole MR × NR tiles; tiles at the bottom and right edges of C
//! are computed into a small buffer and only their valid part is merged, with the same
//! arithmetic as a full tile.
//!
//! Choices that differ from textbook BLIS, each for the thin products (m = 32) that make up
//! most of this project's work, and each measured:
//! - A is packed once per call (step 0), not once per column block, so that rayon tasks
//!   (blocks of columns of C) share Ã instead of each packing it again. Tall products
//!   whose Ã would not fit in L2, cut into blocks of rows only, pack it per block in loop
//!   3 instead, as BLIS does: each row is still packed once, by the thread that uses it.
//! - When B must be transposed while packing (the input gradient G·Wᵀ) and the block has
//!   at most MC rows, each NR-column panel is packed just before its tiles (in step 4)
//!   into a buffer that stays in L1, rather than the whole kc × nc block first.
//! - Packed panels are padded by one cache line, so that panels 16 KiB apart do not all
//!   start in the same L1 set.
//! - When C's columns fill NR-wide tiles badly and its rows fill MR-high tiles well (the
//!   n = 49 pixels of a 7 × 7 convolution), Cᵀ = Bᵀ·Aᵀ is computed into the same memory.
//!
//! Packing reads A and B through their strides, so a transposed operand costs one strided
//! pass here and nothing in the micro-kernel. Packing buffers live in thread-locals and
//! are reused across calls.

use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::MatRef;

/// A read-only strided f32 matrix as a raw pointer, to cross into rayon tasks: element
/// (i, j) is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(super) struct RawMat {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl From<MatRef<'_, f32>> for RawMat {
    fn from(v: MatRef<'_, f32>) -> Self {
        RawMat {
            ptr: v.data.as_ptr(),
            rows: v.rows,
            cols: v.cols,
            rs: v.rs,
            cs: v.cs,
        }
    }
}

impl RawMat {
    /// The transpose (strides swapped).
    fn t(self) -> RawMat {
        RawMat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Pointer to element (i, j).
    ///
    /// # Safety
    /// (i, j) must lie inside the view the `RawMat` was made from (or be one past it).
    unsafe fn at(&self, i: usize, j: usize) -> *const f32 {
        self.ptr.add(i * self.rs + j * self.cs)
    }
}

/// One instruction set's micro-kernel with its tile and blocking sizes.
pub(super) trait MicroKernel {
    /// Rows of the micro-tile.
    const MR: usize;
    /// Columns of the micro-tile.
    const NR: usize;
    /// Depth of a packed block (loop 2).
    const KC: usize;
    /// Rows of C per block of loop 3; a multiple of MR.
    const MC: usize;
    /// Columns of C per block of loop 1; a multiple of NR.
    const NC: usize;

    /// C ← α·Ã·B̃ + β·C on one MR × NR tile, where Ã is an MR-row panel and B̃ an NR-column
    /// panel of depth k. β = 0 writes C without reading it. With `ahead`, each depth step
    /// asks for the next two lines of the region it names (a hint, which kernels may ignore).
    ///
    /// # Safety
    /// - the CPU supports the kernel's instruction set;
    /// - `a` points to `MR·k` readable f32 (`a[p·MR + i]` = Ã(i, p));
    /// - `b` points to `k·NR` readable f32 (`b[p·NR + j]` = B̃(p, j));
    /// - with `c` = (c, rsc): `c + i·rsc + j` is writable for i < MR, j < NR (and readable
    ///   when β ≠ 0), and no other thread touches those elements during the call.
    unsafe fn tile(
        k: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: (*mut f32, usize),
        ahead: Option<Ahead>,
    );

    /// [`MicroKernel::tile`] with B̃'s panel read from row-major B itself (row p at
    /// `b.0 + p·b.1`) and copied to `b_copy` (k·NR values, as [`pack_panel`] would write)
    /// while it is used: the first tile of a panel packs it for the tiles after it, saving
    /// a separate pass over B whose loads would wait on memory with nothing to hide them.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`], with `b.0 + p·b.1 + j` readable for p < k, j < NR and
    /// `b_copy` writable for k·NR f32.
    unsafe fn tile_packing_b(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        b_copy: *mut f32,
        c: *mut f32,
        rsc: usize,
        (alpha, beta): (f32, f32),
    ) {
        let (src, ldb) = b;
        for p in 0..k {
            std::ptr::copy_nonoverlapping(src.add(p * ldb), b_copy.add(p * Self::NR), Self::NR);
        }
        Self::tile(k, alpha, a, b_copy, beta, (c, rsc), None)
    }

    /// C ← α·Ã·B̃ + β·C on the top-left `mr × nr` of a tile, for C with any strides:
    /// element (i, j) of the tile is `c + i·rsc + j·csc`. Used for tiles at the edges of C
    /// and for a transposed C; implementations call [`tile_part`] from a function compiled
    /// for their instruction set.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`], except that only `c + i·rsc + j·csc` for i < mr, j < nr
    /// must be valid.
    unsafe fn tile_part(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        scalars: (f32, f32),
        strides: (usize, usize),
        size: (usize, usize),
    );

    /// Packs a slab of `len` rows of A into MR-row panels: [`pack_panels`] with R = MR.
    ///
    /// # Safety
    /// As [`pack_panels`], and the CPU supports the kernel's instruction set.
    unsafe fn pack_a(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    );

    /// Packs a slab of `len` columns of B into NR-column panels: [`pack_panels`] with
    /// R = NR.
    ///
    /// # Safety
    /// As [`pack_panels`], and the CPU supports the kernel's instruction set.
    unsafe fn pack_b(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    );
}

/// Packs a `len × depth` slab S, S(r, p) = `src[r·sr + p·sp]`, into panels of R rows:
/// `dst[q·L + p·R + i]` = S(q·R + i, p), and 0 where q·R + i ≥ len, with L =
/// [`panel_len`]`(R, depth)`.
///
/// For A, the slab's rows are A's rows (sr = rs, sp = cs); for B, they are B's columns
/// (sr = cs, sp = rs). When the rows are contiguous (sr = 1: row-major B, column-major A)
/// each line S(·, p) is read once, front to back, and dealt out to the panels, which the
/// prefetcher follows better than panel by panel; otherwise each panel goes to `panel`:
/// [`pack_panel`] or a SIMD version of it.
///
/// # Safety
/// `src + i·sr + p·sp` is readable for i < len, p < depth; `dst` is writable for
/// `len.div_ceil(R)·panel_len(R, depth)` f32; `panel` may be called with these pointers.
pub(super) unsafe fn pack_panels<const R: usize>(
    dst: *mut f32,
    src: *const f32,
    (len, depth): (usize, usize),
    (sr, sp): (usize, usize),
    panel: unsafe fn(*mut f32, *const f32, usize, usize, usize, usize),
) {
    if sr == 1 {
        let (whole, rest) = (len / R, len % R);
        for p in 0..depth {
            let line = src.add(p * sp);
            for q in 0..whole {
                let v = line.add(q * R).cast::<[f32; R]>().read_unaligned();
                dst.add(q * panel_len(R, depth) + p * R)
                    .cast::<[f32; R]>()
                    .write_unaligned(v);
            }
            if rest > 0 {
                let d = dst.add(whole * panel_len(R, depth) + p * R);
                for i in 0..R {
                    *d.add(i) = if i < rest {
                        *line.add(whole * R + i)
                    } else {
                        0.0
                    };
                }
            }
        }
        return;
    }
    for (q, r0) in (0..len).step_by(R).enumerate() {
        panel(
            dst.add(q * panel_len(R, depth)),
            src.add(r0 * sr),
            R.min(len - r0),
            depth,
            sr,
            sp,
        );
    }
}

/// Floats of one packed panel of R rows and depth `depth`, padding included.
///
/// Panels are R·depth values plus one cache line: with KC = 256 and R = 16 a bare panel is
/// 16 KiB, so consecutive panels would start in the same L1 set and packing, which writes
/// to every panel of a block in turn, would keep evicting its own lines.
pub(super) const fn panel_len(r: usize, depth: usize) -> usize {
    r * depth + 16
}

/// Packs one panel: `dst[p·R + i]` = S(i, p) for i < rows (≤ R), zero for i ≥ rows. The
/// two common layouts get their own loop: contiguous rows (sr = 1, a copy of R values per
/// p) and contiguous depth (sp = 1, a transpose).
///
/// # Safety
/// `src + i·sr + p·sp` is readable for i < rows, p < depth; `dst` is writable for R·depth
/// f32.
pub(super) unsafe fn pack_panel<const R: usize>(
    dst: *mut f32,
    src: *const f32,
    rows: usize,
    depth: usize,
    sr: usize,
    sp: usize,
) {
    if rows == R && sr == 1 {
        for p in 0..depth {
            let row = src.add(p * sp).cast::<[f32; R]>().read_unaligned();
            dst.add(p * R).cast::<[f32; R]>().write_unaligned(row);
        }
    } else if sp == 1 {
        for p in 0..depth {
            for i in rows..R {
                *dst.add(p * R + i) = 0.0;
            }
        }
        for i in 0..rows {
            let row = src.add(i * sr);
            for p in 0..depth {
                *dst.add(p * R + i) = *row.add(p);
            }
        }
    } else {
        for p in 0..depth {
            for i in 0..R {
                *dst.add(p * R + i) = if i < rows {
                    *src.add(i * sr + p * sp)
                } else {
                    0.0
                };
            }
        }
    }
}

/// The new value of one element of C from the product term `t` = α·(A·B)(i, j): β = 0
/// ignores the old value (it may be NaN); otherwise one fused multiply-add, exactly what
/// the SIMD kernels do, so edge tiles and full tiles round alike.
#[inline]
pub(super) fn update(beta: f32, old: f32, t: f32) -> f32 {
    if beta == 0.0 {
        t
    } else {
        beta.mul_add(old, t)
    }
}

/// A region of memory that a tile asks the caches for while it computes, so that the next
/// panel's source is near when its turn comes: `lines` lines of 16 floats, `per_row` of
/// them in each row, the rows `stride` floats apart from `base`.
///
/// The first tile of a panel of row-major B reads each row of B from memory at its own
/// depth step, one page per row, which the hardware prefetcher does not follow across
/// pages. W1's weights arrive cold (Adam has streamed every parameter and both moments
/// since their last use), and a thin product (32 rows of C) spends little time per panel,
/// so without this the first tile of every panel waits on memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Ahead {
    base: *const f32,
    stride: usize,
    per_row: usize,
    lines: usize,
}

impl Ahead {
    /// The lines of `rows` rows of `len` floats each, from `base`, `stride` floats apart.
    pub(super) fn rows(base: *const f32, stride: usize, rows: usize, len: usize) -> Self {
        let per_row = len.div_ceil(16).max(1);
        Ahead {
            base,
            stride,
            per_row,
            lines: rows * per_row,
        }
    }

    /// A cursor at the region's first line.
    pub(super) fn cursor(self) -> AheadCursor {
        AheadCursor {
            row: self.base,
            col: 0,
            left: self.lines,
            region: self,
        }
    }
}

/// Asks L2 for the line holding `line`: a hint, which never faults whatever the address
/// (formed with wrapping arithmetic, never dereferenced).
#[inline(always)]
fn prefetch_line(_line: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, and SSE (which has it) is part of every x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(_line.cast());
    }
}

/// A walk through the lines of an [`Ahead`] region, row by row.
pub(super) struct AheadCursor {
    region: Ahead,
    /// Start of the current row.
    row: *const f32,
    /// Line within the current row.
    col: usize,
    /// Lines not yet asked for.
    left: usize,
}

impl AheadCursor {
    /// The next line's address, or `None` at the end. The address is only formed, never
    /// dereferenced: wrapping arithmetic, no bounds.
    #[inline(always)]
    fn next_line(&mut self) -> Option<*const f32> {
        if self.left == 0 {
            return None;
        }
        let line = self.row.wrapping_add(self.col * 16);
        self.left -= 1;
        self.col += 1;
        if self.col == self.region.per_row {
            self.col = 0;
            self.row = self.row.wrapping_add(self.region.stride);
        }
        Some(line)
    }

    /// Asks L2 for the next line of the region, if any is left.
    #[inline(always)]
    pub(super) fn prefetch_next(&mut self) {
        if let Some(line) = self.next_line() {
            prefetch_line(line);
        }
    }
}

/// The body of [`super::micro_kernel_gflops`] for kernel `K` (its panels: 40 KiB for
/// AVX-512, in L1).
///
/// # Safety
/// The CPU supports `K`'s instruction set.
pub(super) unsafe fn tile_gflops<K: MicroKernel>(millis: u64) -> f64 {
    use std::time::{Duration, Instant};
    let a: Vec<f32> = (0..panel_len(K::MR, K::KC))
        .map(|i| (i % 5) as f32 * 0.01)
        .collect();
    let b: Vec<f32> = (0..panel_len(K::NR, K::KC))
        .map(|i| (i % 3) as f32 * 0.01)
        .collect();
    let mut c = vec![0.0f32; K::MR * K::NR];
    let rounds = 200;
    let flops = (2 * K::MR * K::NR * K::KC * rounds) as f64;
    let mut best = 0.0f64;
    let deadline = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < deadline {
        let t = Instant::now();
        for _ in 0..rounds {
            // SAFETY: the panels hold MR·KC and KC·NR floats, C holds MR × NR with row
            // stride NR; the CPU runs the kernel (caller).
            K::tile(
                K::KC,
                1.0,
                a.as_ptr(),
                b.as_ptr(),
                1.0,
                (c.as_mut_ptr(), K::NR),
                None,
            );
        }
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(&c);
    best
}

/// Largest MR·NR of any kernel: the edge-tile buffer.
const MAX_TILE: usize = 512;

#[repr(C, align(64))]
struct TileBuf([f32; MAX_TILE]);

/// [`MicroKernel::tile_part`] for any kernel: the whole MR × NR tile is computed into a
/// buffer (β = 0), then its `mr × nr` corner is merged into C with [`update`]. Inlined into
/// each kernel's own `tile_part`, so that `update`'s fused multiply-add compiles to one
/// instruction there.
///
/// # Safety
/// As [`MicroKernel::tile_part`].
#[inline(always)]
pub(super) unsafe fn tile_part<K: MicroKernel>(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    (alpha, beta): (f32, f32),
    (rsc, csc): (usize, usize),
    (mr, nr): (usize, usize),
) {
    const { assert!(K::MR * K::NR <= MAX_TILE) };
    let mut buf = TileBuf([0.0; MAX_TILE]);
    K::tile(k, alpha, a, b, 0.0, (buf.0.as_mut_ptr(), K::NR), None);
    for i in 0..mr {
        for j in 0..nr {
            let cij = c.add(i * rsc + j * csc);
            *cij = update(beta, *cij, buf.0[i * K::NR + j]);
        }
    }
}

thread_local! {
    /// Ã of the calling thread.
    static A_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One MC × KC block of Ã, where A is packed per block ([`packs_a_per_block`]).
    static A_BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// B̃ of the thread running a block.
    static B_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a 64-byte-aligned buffer of at least `len` f32 from the thread-local `slot`,
/// grown as needed and kept for the next call. If the slot is in use (a rayon task stolen
/// while this thread waits inside a GEMM that holds it), a fresh buffer is used instead.
fn with_buffer<R>(
    slot: &'static LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    fn aligned(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
        if v.len() < len + 16 {
            v.resize(len + 16, 0.0);
        }
        let off = v.as_ptr().align_offset(64).min(16);
        &mut v[off..off + len]
    }
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(aligned(&mut v, len)),
        Err(_) => f(aligned(&mut Vec::new(), len)),
    })
}

/// What every block of one product shares. Raw pointers so that rayon tasks can hold it.
struct Shared {
    alpha: f32,
    beta: f32,
    /// Ã: depth block pc (of KC) starts at `a_pack + (pc / KC)·a_block`, and holds m̃ / MR
    /// panels of [`panel_len`]`(MR, kc)`.
    a_pack: *const f32,
    a_block: usize,
    /// A itself, when Ã is packed block by block in loop 3 instead ([`packs_a_per_block`]);
    /// then `a_pack` is null.
    a: RawMat,
    k: usize,
    b: RawMat,
    /// C: element (i, j) at `c + i·rsc + j·csc`.
    c: *mut f32,
    rsc: usize,
    csc: usize,
}

// SAFETY: `Shared` is only read by the tasks; Ã and B are read-only for the whole product,
// and the tasks write disjoint blocks of C (see `gemm`).
unsafe impl Sync for Shared {}

/// Where step 0 packs Ã, and A, shared by its tasks.
struct PackDst(*mut f32, RawMat);

impl PackDst {
    fn get(&self) -> (*mut f32, RawMat) {
        (self.0, self.1)
    }
}

// SAFETY: the tasks of step 0 only read A and write disjoint panels of Ã, and nothing
// reads Ã until they have all finished.
unsafe impl Sync for PackDst {}

/// Elements of A (m·k) from which a parallel product packs Ã in parallel too: 1 MiB, about
/// 40 µs of copying, where handing out the tasks costs a few.
const PAR_PACK_A_MIN: usize = 1 << 18;

/// C ← α·A·B + β·C with micro-kernel `K`, on the calling thread or (`par`) over blocks of
/// C on rayon. A is m × k, B is k × n, C row-major with row stride `ldc`.
///
/// When C's columns fill the NR-wide tiles badly and its rows fill MR-high tiles well (the
/// n = 49 pixels of a 7 × 7 convolution), the product is computed as Cᵀ = Bᵀ·Aᵀ into the
/// same memory, each tile then merged through [`MicroKernel::tile_part`].
///
/// # Safety
/// - the CPU supports `K`'s instruction set;
/// - A's and B's views lie inside live slices that nothing writes during the call;
/// - `c` holds m × n with row stride `ldc ≥ n`, i.e. `(m − 1)·ldc + n ≤ c.len()`;
/// - `a.cols == b.rows`.
pub(super) unsafe fn gemm<K: MicroKernel>(
    par: bool,
    alpha: f32,
    a: RawMat,
    b: RawMat,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for cij in &mut c[i * ldc..i * ldc + n] {
                *cij = update(beta, *cij, 0.0);
            }
        }
        return;
    }

    let (a, b, rsc, csc) = if transpose_pays::<K>(m, k, n) {
        (b.t(), a.t(), 1, ldc)
    } else {
        (a, b, ldc, 1)
    };
    let (m, n) = (a.rows, b.cols);
    let kc_max = K::KC.min(k);
    let blocks = Blocks::new::<K>(m, n, par);
    let per_block = packs_a_per_block::<K>(m, k, n, &blocks);
    let a_block = m.div_ceil(K::MR) * panel_len(K::MR, kc_max);
    let a_len = if per_block {
        0
    } else {
        k.div_ceil(kc_max) * a_block
    };
    with_buffer(&A_PACK, a_len, |a_pack| {
        // 0. Pack all of A (unless it is packed per block in loop 3): depth block pc holds
        //    m̃ × kc, in MR-row panels. A large Ã is packed in parallel, MC rows of one
        //    depth block per task, so that the other threads do not wait for it.
        let depth_blocks = if per_block { 0 } else { k.div_ceil(kc_max) };
        let row_chunks = m.div_ceil(K::MC);
        let dst = PackDst(a_pack.as_mut_ptr(), a);
        let pack = |t: usize| {
            let (pc, ic) = ((t / row_chunks) * K::KC, (t % row_chunks) * K::MC);
            let (kc, mc) = (K::KC.min(k - pc), K::MC.min(m - ic));
            // SAFETY: A's view is valid (caller); a_pack holds a block of m̃ / MR panels for
            // each pc, and ic is a multiple of MC, hence of MR, so each task writes its own
            // whole panels.
            unsafe {
                let (a_pack, a) = dst.get();
                let block = a_pack.add(pc / kc_max * a_block);
                let panels = block.add(ic / K::MR * panel_len(K::MR, kc));
                K::pack_a(panels, a.at(ic, pc), mc, kc, a.rs, a.cs);
            }
        };
        let tasks = depth_blocks * row_chunks;
        if par && tasks > 1 && m * k >= PAR_PACK_A_MIN {
            (0..tasks).into_par_iter().for_each(pack);
        } else {
            (0..tasks).for_each(pack);
        }

        let shared = Shared {
            alpha,
            beta,
            a_pack: match per_block {
                true => std::ptr::null(),
                false => a_pack.as_ptr(),
            },
            a_block,
            a,
            k,
            b,
            c: c.as_mut_ptr(),
            rsc,
            csc,
        };
        let run = |t: usize| {
            // SAFETY: the blocks of `Blocks` tile C without overlap and start on multiples
            // of MR, so each task writes elements no other task touches; Ã is packed and
            // only read from here on; the rest is the caller's contract.
            unsafe { run_block::<K>(&shared, blocks.get(t)) }
        };
        if par && blocks.count() > 1 {
            (0..blocks.count()).into_par_iter().for_each(run);
        } else {
            (0..blocks.count()).for_each(run);
        }
    });
}

/// How one block's B̃ gets packed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PackB {
    /// Row-major B: each NR-column panel by the first tile that uses it
    /// ([`MicroKernel::tile_packing_b`]), so that waiting on B's rows overlaps arithmetic.
    FirstTile,
    /// Transposed B (as Wᵀ in an input gradient) and at most MC rows: each panel just
    /// before its tiles, into a one-panel buffer that stays in L1. It reads NR rows of W
    /// front to back, which the prefetcher follows.
    PerPanel,
    /// Otherwise: the whole kc × nc block before loop 3.
    Block,
}

/// Loops 1–4 over one block of C (rows × cols), packing B̃ in this thread's buffer; loop
/// 5 is [`panel_tiles`].
///
/// # Safety
/// The contract of [`gemm`], plus: `rows.start` is a multiple of MR, and no other thread
/// touches this block of C during the call.
unsafe fn run_block<K: MicroKernel>(s: &Shared, (rows, cols): (Range<usize>, Range<usize>)) {
    let b = &s.b;
    let mode = if b.cs == 1 {
        PackB::FirstTile
    } else if rows.len() <= K::MC && b.rs == 1 {
        PackB::PerPanel
    } else {
        PackB::Block
    };
    let panels = match mode {
        PackB::PerPanel => 1,
        _ => K::NC.min(cols.len()).div_ceil(K::NR),
    };
    let b_len = panels * panel_len(K::NR, K::KC.min(s.k));
    let a_len = match s.a_pack.is_null() {
        true => K::MC.min(rows.len()).div_ceil(K::MR) * panel_len(K::MR, K::KC.min(s.k)),
        false => 0,
    };
    with_buffer(&A_BLOCK, a_len, |a_block| {
        with_buffer(&B_PACK, b_len, |b_pack| {
            block_loops::<K>(
                s,
                (rows, cols),
                mode,
                a_block.as_mut_ptr(),
                b_pack.as_mut_ptr(),
            )
        })
    })
}

/// The loops of [`run_block`], with its buffers: `a_block` for one block of Ã (when A is
/// packed per block) and `b_pack` for B̃.
///
/// # Safety
/// As [`run_block`]; the buffers hold what [`run_block`] sized them for.
unsafe fn block_loops<K: MicroKernel>(
    s: &Shared,
    (rows, cols): (Range<usize>, Range<usize>),
    mode: PackB,
    a_block: *mut f32,
    b_pack: *mut f32,
) {
    let b = &s.b;
    // 1. Columns of the block, NC at a time.
    for jc in cols.clone().step_by(K::NC) {
        let nc = K::NC.min(cols.end - jc);
        // 2. Depth, KC at a time.
        for pc in (0..s.k).step_by(K::KC) {
            let kc = K::KC.min(s.k - pc);
            let beta = if pc == 0 { s.beta } else { 1.0 };
            if mode == PackB::Block {
                K::pack_b(b_pack, b.at(pc, jc), nc, kc, b.cs, b.rs);
            }
            // 3. Rows, MC at a time.
            for ic in rows.clone().step_by(K::MC) {
                let mc = K::MC.min(rows.end - ic);
                // Ã's panels for rows ic.., depth pc..: packed once up front, or now.
                let a_ic = if s.a_pack.is_null() {
                    K::pack_a(a_block, s.a.at(ic, pc), mc, kc, s.a.rs, s.a.cs);
                    a_block.cast_const()
                } else {
                    let a_pc = s.a_pack.add(pc / K::KC * s.a_block);
                    a_pc.add(ic / K::MR * panel_len(K::MR, kc))
                };
                // 4. NR-column panels of B̃.
                for jr in (0..nc).step_by(K::NR) {
                    let nr = K::NR.min(nc - jr);
                    let src = b.at(pc, jc + jr);
                    let mut panel = b_pack.add(jr / K::NR * panel_len(K::NR, kc));
                    let mut fuse = None;
                    match mode {
                        PackB::Block => {}
                        PackB::PerPanel => {
                            panel = b_pack;
                            K::pack_b(panel, src, nr, kc, b.cs, b.rs);
                        }
                        // Packed during the first block of rows, then reused.
                        PackB::FirstTile if ic == rows.start => {
                            if nr == K::NR && mc >= K::MR && s.csc == 1 {
                                fuse = Some((src, b.rs));
                            } else {
                                K::pack_b(panel, src, nr, kc, b.cs, b.rs);
                            }
                        }
                        PackB::FirstTile => {}
                    }
                    // While this panel computes, fetch the source of the next one, which
                    // the first block of rows packs straight from B.
                    let ahead = (mode != PackB::Block && ic == rows.start)
                        .then(|| next_source::<K>(b, (jc, nc, jr), (pc, s.k), cols.end))
                        .flatten();
                    let (a_rows, c_cols) = ((ic, mc), (jc + jr, nr));
                    let panel = (panel, fuse, ahead);
                    panel_tiles::<K>(s, (a_ic, a_rows), panel, c_cols, (kc, beta));
                }
            }
        }
    }
}

/// The region of B that the panel after (`jc + jr`, `pc`) is packed from, in the order of
/// the loops of [`run_block`] within one block whose columns end at `cols_end`: the next
/// panel of the depth block, else the first of the next depth block, else of the next
/// column block; after the block's last panel, the first panel of the block of C to its
/// right, which the same thread usually takes next (a thin product's blocks are columns);
/// `None` at B's right edge.
fn next_source<K: MicroKernel>(
    b: &RawMat,
    (jc, nc, jr): (usize, usize, usize),
    (pc, k): (usize, usize),
    cols_end: usize,
) -> Option<Ahead> {
    let (pc, col, nc) = if jr + K::NR < nc {
        (pc, jc + jr + K::NR, nc - jr - K::NR)
    } else if pc + K::KC < k {
        (pc + K::KC, jc, nc)
    } else if jc + K::NC < cols_end {
        (0, jc + K::NC, cols_end - jc - K::NC)
    } else if cols_end < b.cols {
        (0, cols_end, b.cols - cols_end)
    } else {
        return None;
    };
    let (kc, nr) = (K::KC.min(k - pc), K::NR.min(nc));
    // SAFETY: (pc, col) lies inside B (pc < k, col < B's columns), whose view is valid for
    // the whole product.
    let src = unsafe { b.at(pc, col) };
    Some(if b.cs == 1 {
        Ahead::rows(src, b.rs, kc, nr)
    } else {
        Ahead::rows(src, b.cs, nr, kc)
    })
}

/// Loop 5: the tiles of rows `ic..ic + mc` against one B̃ panel (of columns `j0..j0 + nr`
/// of C). With `fuse` = (B's panel, its row stride), the first tile packs the panel; with
/// `ahead`, the first tile that does not pack fetches the next panel's source.
///
/// # Safety
/// As [`run_block`]; `a_ic` holds Ã's packed panels of rows `ic..ic + mc` at this depth
/// block; `panel` holds the packed panel (or room for it, with `fuse`).
unsafe fn panel_tiles<K: MicroKernel>(
    s: &Shared,
    (a_ic, (ic, mc)): (*const f32, (usize, usize)),
    (panel, mut fuse, mut ahead): (*mut f32, Option<(*const f32, usize)>, Option<Ahead>),
    (j0, nr): (usize, usize),
    (kc, beta): (usize, f32),
) {
    for ir in (ic..ic + mc).step_by(K::MR) {
        let mr = K::MR.min(ic + mc - ir);
        let a = a_ic.add((ir - ic) / K::MR * panel_len(K::MR, kc));
        let c = s.c.add(ir * s.rsc + j0 * s.csc);
        if s.csc == 1 {
            // In a training step C is seldom in cache, and a tile, shallow or deep, would
            // wait on its cold lines at the end: ask for the tile two below (or at the top
            // of the next panel) now. (Measured in README.md, "Performance".)
            let below = ir + 2 * K::MR;
            let (row, col) = if below < ic + mc {
                (below, j0)
            } else {
                (ic + (below - ic - mc), j0 + K::NR)
            };
            let target = s.c.wrapping_add(row * s.rsc + col);
            for i in 0..K::MR {
                for j in (0..K::NR).step_by(16) {
                    prefetch_line(target.wrapping_add(i * s.rsc + j));
                }
            }
        }
        let scalars = (s.alpha, beta);
        if mr == K::MR && nr == K::NR && s.csc == 1 {
            match fuse.take() {
                Some(src) => K::tile_packing_b(kc, a, src, panel, c, s.rsc, scalars),
                None => K::tile(kc, s.alpha, a, panel, beta, (c, s.rsc), ahead.take()),
            }
        } else {
            let strides = (s.rsc, s.csc);
            K::tile_part(kc, a, panel, c, scalars, strides, (mr, nr));
        }
    }
}

/// Most floats of Ã packed up front; past it, a tall product packs it per block.
const A_UP_FRONT_MAX: usize = 1 << 18;

/// Whether Ã is packed one MC × KC block at a time inside loop 3, as in textbook BLIS,
/// rather than all at once before the blocks run: for tall products (as the 12544 × 100
/// columns of a transposed convolution on a 1 × 1 input) whose Ã would not stay in L2, and
/// only where each row of A is then packed once: C cut into blocks of rows only, and a
/// single block of NC columns. Each block then packs its own rows on its own thread.
fn packs_a_per_block<K: MicroKernel>(m: usize, k: usize, n: usize, blocks: &Blocks) -> bool {
    m.next_multiple_of(K::MR) * k > A_UP_FRONT_MAX && blocks.nb == n && n <= K::NC
}

/// Whether computing Cᵀ = Bᵀ·Aᵀ fills the micro-tiles enough better than C = A·B to pay
/// for merging every tile through a buffer, element by element: about as long as 80 of the
/// tile's depth steps, once per depth block.
fn transpose_pays<K: MicroKernel>(m: usize, k: usize, n: usize) -> bool {
    let filled = |rows: usize, cols: usize| {
        let share = |len: usize, r: usize| len as f64 / len.next_multiple_of(r) as f64;
        share(rows, K::MR) * share(cols, K::NR)
    };
    let merge = 1.0 + 80.0 / k.min(K::KC) as f64;
    filled(n, m) > filled(m, n) * merge
}

/// How C is cut into blocks for rayon: rows in blocks of `mb`, columns in blocks of `nb`.
/// Sizes depend on the shape and the kernel only, never on the thread count.
struct Blocks {
    m: usize,
    n: usize,
    mb: usize,
    nb: usize,
}

impl Blocks {
    /// - Thin products (m ≤ MC, as every W1 forward): columns, in about 24 blocks of whole
    ///   panels. Ã is small and shared, so fine blocks cost nothing and balance well.
    /// - Wider than tall: columns, in about 8 blocks of at least 128, so that each block
    ///   of Ã fetched from L3 serves enough panels.
    /// - Taller than wide (weight gradients, m = fan-in): rows, in about 8 blocks of at
    ///   least 64, since each block packs all of B again.
    fn new<K: MicroKernel>(m: usize, n: usize, par: bool) -> Self {
        // `len` cut into about `blocks` blocks of whole `r`-tiles, each at least `min` long.
        let split = |len: usize, r: usize, blocks: usize, min: usize| {
            r * len.div_ceil(r).div_ceil(blocks).max(min.div_ceil(r))
        };
        let (mb, nb) = if !par {
            (m, n)
        } else if n >= m && m <= K::MC {
            (m, split(n, K::NR, 24, 1))
        } else if n >= m {
            (m, split(n, K::NR, 8, 128))
        } else {
            (split(m, K::MR, 8, 64), n)
        };
        Blocks { m, n, mb, nb }
    }

    fn count(&self) -> usize {
        self.m.div_ceil(self.mb) * self.n.div_ceil(self.nb)
    }

    /// Block t, row-block-major: its rows and columns of C.
    fn get(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let col_blocks = self.n.div_ceil(self.nb);
        let (r0, c0) = ((t / col_blocks) * self.mb, (t % col_blocks) * self.nb);
        (
            r0..(r0 + self.mb).min(self.m),
            c0..(c0 + self.nb).min(self.n),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::kernel_portable::Portable;
    use crate::kernels::gemm::MatRef;

    /// A cursor walks the region row by row, a line (16 floats) at a time, and stops after
    /// the last line: here 3 rows of 40 floats (3 lines each), 100 floats apart.
    #[test]
    fn ahead_cursor_visits_each_line_once() {
        let data = vec![0.0f32; 400];
        let base = data.as_ptr();
        let mut cursor = Ahead::rows(base, 100, 3, 40).cursor();
        let offsets: Vec<usize> = std::iter::from_fn(|| cursor.next_line())
            .map(|p| (p as usize - base as usize) / 4)
            .collect();
        assert_eq!(offsets, [0, 16, 32, 100, 116, 132, 200, 216, 232]);
    }

    /// For every panel of a block, in the order of `run_block`'s loops, `next_source` names
    /// the source of the panel that follows it (after the last, the first of the block to
    /// its right, and nothing at B's right edge), for row-major
    /// and transposed B, across several depth and column blocks and ragged edges.
    #[test]
    fn next_source_follows_the_loop_order() {
        type K = Portable;
        let (k, n) = (2 * K::KC + 7, 2 * K::NC + 3 * K::NR + 5);
        let data = vec![0.0f32; k * n];
        let layouts = [
            RawMat::from(MatRef::row_major(&data, k, n)),
            RawMat::from(MatRef::row_major(&data, n, k).t()),
        ];
        for b in layouts {
            for cols in [0..n, K::NR..n - 1, 3..4] {
                let mut panels = Vec::new();
                for jc in cols.clone().step_by(K::NC) {
                    let nc = K::NC.min(cols.end - jc);
                    for pc in (0..k).step_by(K::KC) {
                        for jr in (0..nc).step_by(K::NR) {
                            panels.push((jc, nc, jr, pc));
                        }
                    }
                }
                // After the block, the first panel of the block to its right.
                let right = (cols.end < n).then_some((cols.end, n - cols.end, 0, 0));
                for (i, &(jc, nc, jr, pc)) in panels.iter().enumerate() {
                    let got = next_source::<K>(&b, (jc, nc, jr), (pc, k), cols.end);
                    let next = panels.get(i + 1).copied().or(right);
                    let want = next.map(|(jc, nc, jr, pc)| {
                        let (kc, nr) = (K::KC.min(k - pc), K::NR.min(nc - jr));
                        // SAFETY: (pc, jc + jr) lies inside B.
                        let src = unsafe { b.at(pc, jc + jr) };
                        if b.cs == 1 {
                            Ahead::rows(src, b.rs, kc, nr)
                        } else {
                            Ahead::rows(src, b.cs, nr, kc)
                        }
                    });
                    assert_eq!(
                        got, want,
                        "cols {cols:?}, panel {i} (jc {jc}, jr {jr}, pc {pc})"
                    );
                }
            }
        }
    }
}
