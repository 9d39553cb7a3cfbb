//! Where the training loop runs a step: on a worker of the rayon pool that the CPU kernels
//! split their work over.
//!
//! Every fused kernel hands its work to rayon's global pool. Called from the main thread, each
//! of the hundreds of parallel loops in a step injects its jobs, wakes the sleeping workers and
//! puts the main thread to sleep until they finish: the benchmark model's LoRA step spent ~7%
//! of its samples in those wake-ups and sleeps. Run on a worker, the step's own thread takes
//! part in each loop and only the other workers are woken (measured: 0.150 -> 0.140 s/step,
//! BENCHMARKS.md). Only on the CPU backend: GPU runtimes keep their calls on the thread that
//! started them. MPI runs initialised as `Threading::Serialized` (trl-cli's `mpi_world.rs`),
//! which allows any one thread at a time to call it: the step's collectives, made on the worker
//! while the thread that started the run waits, are such calls.

use burn::tensor::Device;

/// Runs `step` on a rayon worker when `device` is the CPU backend, else on this thread.
pub(crate) fn run_step<R: Send>(device: &Device, step: impl FnOnce() -> R + Send) -> R {
    if on_the_cpu(device) {
        rayon::scope(|_| step())
    } else {
        step()
    }
}

/// Whether `device` is the flex (CPU) backend.
fn on_the_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    );
    #[allow(unreachable_code)]
    {
        let _ = device;
        false
    }
}
