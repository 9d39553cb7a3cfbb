//! The processes a run trains on, and the few collective operations data-parallel training
//! needs between them: summing host buffers (gradients, the loss normaliser, metrics),
//! broadcasting rank 0's bytes (parameters), a barrier, and bringing the whole job down.
//!
//! The training loop only ever talks to [`world()`]: a single process ([`SingleProcess`],
//! every operation a no-op) unless the binary installed another implementation at start-up
//! (trl-cli's MPI world, compiled with its `mpi` feature). So trl-core needs no MPI library,
//! and the loop has no `cfg` for it: with one process every collective call returns at once.

use std::sync::OnceLock;

use crate::{Error, Result};

/// The communication data-parallel training needs. Every rank calls the same operations in
/// the same order with buffers of the same length (what MPI's collectives require); an
/// implementation that cannot complete one brings the job down rather than return.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// How many processes train together.
    fn size(&self) -> usize;

    /// Replaces `values` on every rank with their element-wise sum over all ranks.
    fn all_reduce_sum_f32(&self, values: &mut [f32]);

    /// [`Collective::all_reduce_sum_f32`] for `f64` (losses, item counts, metric sums).
    fn all_reduce_sum_f64(&self, values: &mut [f64]);

    /// Replaces `bytes` on every rank with rank 0's.
    fn broadcast_from_root(&self, bytes: &mut [u8]);

    /// Returns once every rank has called it.
    fn barrier(&self);

    /// Ends every process of the job with `code` (after the caller printed why).
    fn abort(&self, code: i32) -> !;

    /// Whether this process writes logs, checkpoints and outputs (rank 0).
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

/// One rank of a simulated job, so data-parallel code (gathers, sharding) is unit-tested
/// without MPI: each `all_reduce_sum_f64` adds the next of the other ranks' scripted
/// contributions (in call order; nothing once the script is used up), f32 sums, broadcasts and
/// barriers leave the buffers alone, and `abort` panics.
#[derive(Debug, Default)]
pub struct ScriptedPeers {
    rank: usize,
    size: usize,
    others: std::sync::Mutex<std::collections::VecDeque<Vec<f64>>>,
}

impl ScriptedPeers {
    /// Rank `rank` of `size`, the other ranks adding `others[i]` to the `i`-th f64 all-reduce.
    pub fn new(rank: usize, size: usize, others: Vec<Vec<f64>>) -> Self {
        ScriptedPeers {
            rank,
            size,
            others: std::sync::Mutex::new(others.into()),
        }
    }
}

impl Collective for ScriptedPeers {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let next = self.others.lock().map(|mut o| o.pop_front()).ok().flatten();
        if let Some(other) = next {
            values.iter_mut().zip(other).for_each(|(v, o)| *v += o);
        }
    }

    fn broadcast_from_root(&self, _bytes: &mut [u8]) {}

    fn barrier(&self) {}

    fn abort(&self, code: i32) -> ! {
        panic!("a simulated rank aborted the job with code {code}")
    }
}

/// One process training alone: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) {}

    fn broadcast_from_root(&self, _bytes: &mut [u8]) {}

    fn barrier(&self) {}

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// Makes `collective` the world of this process; call it once, before training starts.
pub fn install(collective: Box<dyn Collective>) -> Result<()> {
    WORLD.set(collective).map_err(|_| Error::Device {
        message: "the process group was already set up (install it once, at start-up)".into(),
    })
}

/// The processes this run trains on: what [`install`] set, else a single process.
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(SingleProcess)).as_ref()
}

/// The `rank R of N` text of start-up lines and error messages.
pub fn describe(world: &dyn Collective) -> String {
    format!("rank {} of {}", world.rank(), world.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_process_leaves_buffers_alone() {
        let world = SingleProcess;
        let mut values = [1.0f32, -2.0];
        world.all_reduce_sum_f32(&mut values);
        let mut bytes = [7u8, 8];
        world.broadcast_from_root(&mut bytes);
        assert_eq!((values, bytes), ([1.0, -2.0], [7, 8]));
        assert!(world.is_main() && world.size() == 1);
        assert_eq!(describe(&world), "rank 0 of 1");
    }
}
