//! Running `trl` under `mpiexec` for the data-parallel tests (`tests/mpi.rs`,
//! `tests/mpi_online.rs`), and comparing what two ranks and one process wrote.

use std::path::Path;
use std::process::{Command, Output};

use safetensors::SafeTensors;

use super::{cache_dir, root, text};

/// `mpiexec -n N` as this machine allows it: as root (CI runs as root), more ranks than
/// cores, no pinning (two ranks bound to one core would share it). Ranks run one thread
/// each, as the one-process runs they are compared with.
pub fn mpiexec() -> Command {
    let mut command = Command::new("mpiexec");
    command
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        .current_dir(root())
        .env("TRL_RS_CACHE", cache_dir())
        .env("RAYON_NUM_THREADS", "1");
    command
}

/// `trl args` in one process running one thread (as each rank does); panics on failure.
pub fn trl_one_thread(args: &[String]) -> Output {
    let output = super::trl_command(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    output
}

/// Every tensor of `dir/model.safetensors` as f32 values, sorted by name.
pub fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// `a` and `b` within 1e-5 (the data-parallel tests' tolerance), relative for values above 1:
/// a gradient norm of ~34 sums thousands of f32 terms, in another order on two ranks than in
/// one process (seen: 34.390992 vs 34.391005). Names `what` otherwise.
pub fn assert_close(what: &str, a: f64, b: f64) {
    let scale = a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= 1e-5 * scale, "{what}: {a} vs {b}");
}
