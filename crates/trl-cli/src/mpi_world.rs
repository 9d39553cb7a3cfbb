//! The MPI world (cargo feature `mpi`): `trl` started by `mpirun`/`mpiexec`/`srun` joins
//! MPI_COMM_WORLD and installs it as trl-core's [`Collective`], so the training loop trains
//! data-parallel. Built on rsmpi (the `mpi` crate) over the system's MPI library (Debian's
//! OpenMPI here); every operation goes through host buffers, so it works on every backend.

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Equivalence;
use trl_core::train::collective::{Collective, describe, install};

/// MPI_COMM_WORLD as trl-core's [`Collective`]. The communicator handle is not `Send`, so it
/// is named again for each call (a constant, no MPI call).
struct MpiWorld {
    rank: usize,
    size: usize,
}

impl MpiWorld {
    fn comm() -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    fn all_reduce_sum<T: Equivalence + Copy>(values: &mut [T]) {
        let send = values.to_vec();
        Self::comm().all_reduce_into(&send[..], values, SystemOperation::sum());
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        Self::all_reduce_sum(values);
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        Self::all_reduce_sum(values);
    }

    fn broadcast_from_root(&self, bytes: &mut [u8]) {
        Self::comm().process_at_rank(0).broadcast_into(bytes);
    }

    fn barrier(&self) {
        Self::comm().barrier();
    }

    fn abort(&self, code: i32) -> ! {
        Self::comm().abort(code)
    }
}

/// Joins the MPI job and makes it this process's world; the returned universe finalizes MPI
/// when dropped (at the end of `main`, after every rank finished). A panic on any thread
/// prints its message with the rank and aborts the whole job (a rank that unwound into
/// MPI_Finalize would leave the others waiting in a collective for ever).
pub fn start() -> anyhow::Result<Universe> {
    // Serialized: the training thread makes the collective calls, but a panic hook on
    // another thread may still call MPI_Abort.
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
        .ok_or_else(|| anyhow::anyhow!("MPI was already initialized in this process"))?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    install(Box::new(MpiWorld { rank, size }))?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let world = MpiWorld { rank, size };
        eprintln!("error ({}): the process panicked", describe(&world));
        default_hook(info);
        world.abort(101);
    }));
    Ok(universe)
}
