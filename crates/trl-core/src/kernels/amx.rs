//! Intel AMX tiles for bf16 products (Sapphire Rapids and later Xeons): detection, the Linux
//! permission a process needs before touching tile registers, and the one tile kernel
//! [`super::gemm_bf16`] runs.
//!
//! Written by hand because no maintained Rust crate exposes AMX (the `gemm` crate has no bf16
//! path, and Rust's AMX intrinsics are nightly-only): `tdpbf16ps` multiplies a 16 x 32 bf16
//! tile by a 32 x 16 one into 16 x 16 f32 accumulators, 16384 FLOP per instruction, about three
//! times what the f32 AVX-512 GEMM reaches on the same core.

use std::arch::asm;
use std::sync::OnceLock;

/// Rows of a tile; an A tile's row holds [`TILE_K`] bf16 values, a C tile's 16 f32.
pub const TILE_ROWS: usize = 16;
/// bf16 values along the inner dimension per `tdpbf16ps` (64 bytes a row).
pub const TILE_K: usize = 32;

/// Whether this CPU has AMX-BF16 and Linux granted this process the tile state (asked once).
pub fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| cpu_has_amx_bf16() && request_tile_permission())
}

/// CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
fn cpu_has_amx_bf16() -> bool {
    // `cpuid` exists on every x86_64 CPU; leaf 7 is answered (zeros) even where absent.
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    if max_leaf < 7 {
        return false;
    }
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux (5.16+) hands the 8 KiB tile
/// state to a process only when asked; touching tiles without it kills the process (SIGILL).
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall with integer arguments; it fails cleanly on older kernels.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// The 64-byte tile configuration `ldtilecfg` reads: palette 1, eight tiles of 16 rows x 64
/// bytes (tmm0-3 the 2 x 2 accumulators, tmm4-5 two A tiles, tmm6-7 two B tiles).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn two_by_two() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for tile in 0..8 {
            bytes[16 + 2 * tile] = 64; // bytes a row (u16, little endian)
            bytes[48 + tile] = TILE_ROWS as u8;
        }
        TileConfig(bytes)
    }
}

/// Configures this thread's tiles for [`block_32x32`]; pair with [`release`].
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn configure() {
    let config = TileConfig::two_by_two();
    // SAFETY: the caller checked AMX and the permission; `config` is a valid palette-1 layout.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack)) };
}

/// Frees this thread's tile state (so the kernel stops saving 8 KiB at each context switch).
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn release() {
    // SAFETY: as [`configure`].
    unsafe { asm!("tilerelease", options(nostack)) };
}

/// Where [`block_32x32`] writes its 32 x 32 f32 outputs: rows `row_bytes` apart from `ptr`,
/// and whether the product is added to what they hold (loaded into the tiles first) or
/// replaces it.
#[derive(Clone, Copy)]
pub struct BlockOut {
    pub ptr: *mut f32,
    pub row_bytes: usize,
    pub accumulate: bool,
}

/// `c[32 x 32] (+)= a[32 x inner] @ b[inner x 32]` in f32 from bf16 operands.
///
/// `a`: 32 rows of `inner` bf16 values, `a_row_bytes` apart; `b`: two 16-column blocks in
/// VNNI order (`[inner / 2][16][2]` each, 64 bytes per pair of inner rows), `b_block_elems`
/// apart; `c`: see [`BlockOut`]. `inner` is a multiple of [`TILE_K`].
///
/// # Safety
/// [`configure`] ran on this thread; every pointer covers what the sizes above reach (`c`'s
/// 32 rows initialised when it accumulates).
pub unsafe fn block_32x32(
    a: *const u16,
    a_row_bytes: usize,
    b: *const u16,
    b_block_elems: usize,
    inner: usize,
    c: BlockOut,
) {
    let (c_lower, stride) = (c.ptr.wrapping_byte_add(16 * c.row_bytes), c.row_bytes);
    // SAFETY: the caller guarantees the tile setup and the extents read and written.
    unsafe {
        if c.accumulate {
            asm!(
                "tileloadd tmm0, [{c0} + {stride}*1]",
                "tileloadd tmm1, [{c1} + {stride}*1]",
                "tileloadd tmm2, [{c2} + {stride}*1]",
                "tileloadd tmm3, [{c3} + {stride}*1]",
                c0 = in(reg) c.ptr,
                c1 = in(reg) c.ptr.add(16),
                c2 = in(reg) c_lower,
                c3 = in(reg) c_lower.add(16),
                stride = in(reg) stride,
                options(nostack)
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            );
        }
        let a_lower = a.byte_add(TILE_ROWS * a_row_bytes);
        let mut k = 0;
        while k < inner {
            asm!(
                "tileloadd tmm4, [{a0} + {a_stride}*1]",
                "tileloadd tmm5, [{a1} + {a_stride}*1]",
                "tileloadd tmm6, [{b0} + {b_stride}*1]",
                "tileloadd tmm7, [{b1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(k),
                a1 = in(reg) a_lower.add(k),
                a_stride = in(reg) a_row_bytes,
                b0 = in(reg) b.add(k * 16),
                b1 = in(reg) b.add(b_block_elems + k * 16),
                b_stride = in(reg) 64usize,
                options(nostack)
            );
            k += TILE_K;
        }
        asm!(
            "tilestored [{c0} + {stride}*1], tmm0",
            "tilestored [{c1} + {stride}*1], tmm1",
            "tilestored [{c2} + {stride}*1], tmm2",
            "tilestored [{c3} + {stride}*1], tmm3",
            c0 = in(reg) c.ptr,
            c1 = in(reg) c.ptr.add(16),
            c2 = in(reg) c_lower,
            c3 = in(reg) c_lower.add(16),
            stride = in(reg) stride,
            options(nostack)
        );
    }
}
