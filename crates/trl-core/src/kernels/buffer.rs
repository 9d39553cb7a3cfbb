//! Fresh output buffers for the CPU kernels, zeroed on every core.
//!
//! A kernel's outputs are new allocations (burn takes ownership of them), and a large one
//! comes back from the allocator as pages the OS has to fault in and clear. `vec![0.0; n]`
//! does that clearing, and the faults, on the calling thread while the rayon workers wait:
//! measured on the benchmark model's LoRA step, a fifth of the step's serial time. Zeroing in
//! chunks on the pool spreads both over the cores, and the pages are then warm in the cache
//! of the core that fills them next. Zeroing (not an uninitialised `Vec`) keeps every kernel's
//! `&mut [f32]` output sound; a kernel that writes every value of its output through
//! `MaybeUninit` takes [`written`] instead and skips the zeroing altogether.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many bytes a buffer is zeroed on the calling thread: the pool's wake-up costs
/// more than the memset.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Bytes each task zeroes: a multiple of the 4 KiB page, so tasks never share one.
const CHUNK_BYTES: usize = 128 * 1024;

/// `len` zeros, filled on every core when the buffer is large.
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    let size = std::mem::size_of::<T>().max(1);
    if len * size < PARALLEL_BYTES {
        return vec![T::default(); len];
    }
    // SAFETY: each chunk is filled in full.
    unsafe {
        written(len, CHUNK_BYTES / size, |_, chunk| {
            chunk.fill(MaybeUninit::new(T::default()))
        })
    }
}

/// A buffer of `len` values that `fill(index, chunk)` writes on every core, `chunk` values a
/// task (the last chunk shorter), with no zeroing pass first.
///
/// # Safety
/// `fill` must write every value of each chunk it is given.
pub(crate) unsafe fn written<T: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(index, dst)| fill(index, dst));
    // SAFETY: the chunks cover `0..len` and `fill` wrote every value of each (the caller's
    // guarantee).
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::zeroed;

    #[test]
    fn small_and_large_buffers_are_zeros_of_the_asked_length() {
        for len in [0, 1, 1000, 65_536 + 3, 1 << 20] {
            let floats: Vec<f32> = zeroed(len);
            assert_eq!(floats.len(), len);
            assert!(floats.iter().all(|&x| x.to_bits() == 0));
            let halves: Vec<u16> = zeroed(len);
            assert_eq!(halves.len(), len);
            assert!(halves.iter().all(|&x| x == 0));
        }
    }
}
