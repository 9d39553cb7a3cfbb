//! Started by an MPI launcher: what a build without the `mpi` feature (the default) does
//! when `mpirun`/`srun` start it as one of several processes, and what `trl env` says about
//! processes. The launcher is simulated through the variables it sets; the runs over real
//! MPI are in `tests/mpi.rs` (`--features mpi`).

mod common;

use common::{text, trl};

#[test]
fn env_names_the_rank_and_the_world_size() {
    let out = trl(&["env"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("processes: rank 0 of 1 (local rank 0)"),
        "{report}"
    );
    let mpi = if cfg!(feature = "mpi") {
        "mpi: compiled in"
    } else {
        "mpi: not compiled in"
    };
    assert!(report.contains(mpi), "{report}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn several_processes_without_the_mpi_feature_are_refused() {
    for variable in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let out = common::trl_command(&[
            "sft",
            "--model_name_or_path",
            common::MODEL,
            "--dataset_name",
            "datasets/messages.jsonl",
            "--max_steps",
            "1",
        ])
        .env(variable, "2")
        .output()
        .unwrap();
        let message = text(&out);
        assert!(!out.status.success(), "{message}");
        assert!(
            message.contains(&format!("one of 2 processes ({variable}=2"))
                && message.contains("--features mpi"),
            "{message}"
        );
    }
}

#[cfg(not(feature = "mpi"))]
#[test]
fn one_process_announced_by_a_launcher_runs_as_usual() {
    let out = common::trl_command(&["env"])
        .env("OMPI_COMM_WORLD_SIZE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
