//! One lock over burn's random stream for code that runs beside other code in one process.
//!
//! burn's flex backend keeps a single random stream per process (`Device::seed` reseeds it for
//! every thread). Something that seeds it and needs the draws that follow to repeat (a
//! checkpointed layer's dropout rerun in a test, a seeded adapter init compared across two
//! builds) holds [`hold`] for as long as it relies on the stream; checks and tests that only
//! draw use [`draw`] / [`draw_int`], which take the lock around the draw, so no draw lands
//! inside another thread's seeded section. A training run has one thread drawing and needs
//! none of this; `cargo test` runs many tests at once.

use std::sync::{Mutex, MutexGuard};

use burn::tensor::{Device, Distribution, Int, Tensor};

static STREAM: Mutex<()> = Mutex::new(());

/// Holds the stream until the guard drops (a panic in a holder does not poison it for others).
pub fn hold() -> MutexGuard<'static, ()> {
    STREAM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Tensor::random(dims, distribution, device)` under the lock.
pub fn draw<const D: usize>(
    dims: [usize; D],
    distribution: Distribution,
    device: &Device,
) -> Tensor<D> {
    let _stream = hold();
    Tensor::random(dims, distribution, device)
}

/// `Tensor::<D, Int>::random(dims, distribution, device)` under the lock.
pub fn draw_int<const D: usize>(
    dims: [usize; D],
    distribution: Distribution,
    device: &Device,
) -> Tensor<D, Int> {
    let _stream = hold();
    Tensor::random(dims, distribution, device)
}
