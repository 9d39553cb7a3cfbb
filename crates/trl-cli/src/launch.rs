//! Starting as one process of a data-parallel job: what `mpirun`/`mpiexec`/`srun` tell a
//! process through its environment, joining MPI when the binary has the `mpi` feature, a
//! clear error when it has not, and how a failing rank brings the whole job down.

use anyhow::{Result, bail};
use trl_core::train::collective::{describe, world};

/// Environment variables through which MPI launchers announce the job's size: OpenMPI's
/// `mpirun`/`mpiexec`, and PMI (MPICH's Hydra, Slurm's `srun --mpi=pmi2`).
const SIZE_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// Variables naming this process's rank among those of its node (for `cuda:<local rank>`).
const LOCAL_RANK_VARIABLES: [&str; 3] = [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "SLURM_LOCALID",
];

/// What keeps the job joined until `main` returns (MPI's universe with the feature).
#[cfg(feature = "mpi")]
pub type Membership = Option<mpi::environment::Universe>;
/// What keeps the job joined until `main` returns (nothing without the `mpi` feature).
#[cfg(not(feature = "mpi"))]
pub type Membership = ();

/// The launcher's variable and the job size it announces, if an MPI launcher started us.
pub fn launcher_size() -> Option<(&'static str, usize)> {
    let read = |name: &'static str| Some((name, std::env::var(name).ok()?.trim().parse().ok()?));
    SIZE_VARIABLES.iter().find_map(|&name| read(name))
}

/// This process's rank on its node (0 without a launcher).
pub fn local_rank() -> usize {
    LOCAL_RANK_VARIABLES
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Joins the job when an MPI launcher started this process (with the `mpi` feature); an
/// error when the launcher started several processes and this build cannot join them.
pub fn join() -> Result<Membership> {
    let launched = launcher_size();
    #[cfg(feature = "mpi")]
    {
        match launched {
            Some(_) => Ok(Some(crate::mpi_world::start()?)),
            None => Ok(None),
        }
    }
    #[cfg(not(feature = "mpi"))]
    {
        refuse_without_mpi(launched)
    }
}

/// The error for a launch of several processes by a binary built without `mpi`: each
/// would train the whole run alone and overwrite the others' outputs.
#[cfg_attr(feature = "mpi", allow(dead_code))]
pub fn refuse_without_mpi(launched: Option<(&str, usize)>) -> Result<()> {
    match launched {
        Some((variable, size)) if size > 1 => bail!(
            "trl was started as one of {size} processes ({variable}={size}, an MPI launcher such \
             as mpirun or srun), but this build has no `mpi` feature, so each process would \
             train the whole run alone; rebuild with `cargo build --release --features mpi` \
             (needs an MPI library, e.g. Debian's libopenmpi-dev) or run trl without the launcher"
        ),
        _ => Ok(()),
    }
}

/// Commands that train data-parallel; every other command runs in one process only.
pub const DATA_PARALLEL_COMMANDS: [&str; 8] =
    ["sft", "dpo", "kto", "reward", "grpo", "rloo", "ppo", "env"];

/// An error when `command` is run by several processes but is not data-parallel.
pub fn check_command(command: &str) -> Result<()> {
    let world = world();
    if world.size() > 1 && !DATA_PARALLEL_COMMANDS.contains(&command) {
        bail!(
            "`trl {command}` runs in one process, but {} processes were launched; data-parallel \
             runs support {} (launch `trl {command}` without mpirun/srun)",
            world.size(),
            DATA_PARALLEL_COMMANDS[..DATA_PARALLEL_COMMANDS.len() - 1].join(", ")
        );
    }
    Ok(())
}

/// Prints `err` and, in a job of several processes, names the rank and ends every process
/// of the job (the others may be waiting for this one in a collective); returns otherwise.
pub fn fail(err: &anyhow::Error, code: u8) {
    let world = world();
    if world.size() == 1 {
        eprintln!("error: {err:#}");
        return;
    }
    eprintln!("error ({}): {err:#}", describe(world));
    world.abort(i32::from(code));
}

/// The device spec of this rank: with several processes, a plain `cuda` (or the default
/// CUDA device) means `cuda:<local rank>`; an explicit index is kept.
pub fn rank_device(spec: &str, explicit: bool, size: usize, local_rank: usize) -> String {
    let lower = spec.trim().to_ascii_lowercase();
    let plain_cuda = lower == "cuda" || (!explicit && lower.starts_with("cuda"));
    if size > 1 && plain_cuda {
        format!("cuda:{local_rank}")
    } else {
        spec.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_processes_without_the_feature_are_refused_with_the_fix() {
        let err = refuse_without_mpi(Some(("OMPI_COMM_WORLD_SIZE", 2)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one of 2 processes") && err.contains("--features mpi"),
            "{err}"
        );
        assert!(refuse_without_mpi(Some(("PMI_SIZE", 1))).is_ok());
        assert!(refuse_without_mpi(None).is_ok());
    }

    #[test]
    fn each_rank_takes_the_gpu_of_its_local_rank() {
        assert_eq!(rank_device("cuda", true, 4, 3), "cuda:3");
        assert_eq!(rank_device("cuda:0", false, 2, 1), "cuda:1");
        assert_eq!(rank_device("cuda:0", true, 2, 1), "cuda:0");
        assert_eq!(rank_device("cuda", true, 1, 0), "cuda");
        assert_eq!(rank_device("cpu", false, 2, 1), "cpu");
    }
}
