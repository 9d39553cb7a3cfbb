//! How far training moved each parameter, compared with TRL's run: the L2 norm of
//! `final - initial` per tensor. Final norms alone hide the update (8 steps move a norm by
//! < 1%, so a 2% tolerance on them passes an untrained model); the update's own norm does not.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn f32_tensors(bytes: &[u8], file: &Path) -> Result<BTreeMap<String, Vec<f32>>, String> {
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!(
                "{}: {name} is {:?}, expected F32",
                file.display(),
                view.dtype()
            ));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(name, values);
    }
    Ok(out)
}

/// `||final - initial||_2` (accumulated in f64) of every tensor of two f32 safetensors files
/// holding the same tensors: the per-parameter size of a run's update.
pub fn safetensors_update_norms(
    initial: &Path,
    last: &Path,
) -> Result<BTreeMap<String, f64>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (a, b) = (read(initial)?, read(last)?);
    let (before, after) = (f32_tensors(&a, initial)?, f32_tensors(&b, last)?);
    if before.keys().ne(after.keys()) {
        return Err(format!(
            "{} and {} hold different tensors",
            initial.display(),
            last.display()
        ));
    }
    let mut norms = BTreeMap::new();
    for (name, x) in &before {
        let y = &after[name];
        if x.len() != y.len() {
            return Err(format!(
                "{name}: {} values before, {} after",
                x.len(),
                y.len()
            ));
        }
        let sq: f64 = x
            .iter()
            .zip(y)
            .map(|(&p, &q)| (q as f64 - p as f64).powi(2))
            .sum();
        norms.insert(name.clone(), sq.sqrt());
    }
    Ok(norms)
}

/// Checks our per-parameter update norms against TRL's (`{name: norm}`): the same parameter
/// names (at least one), each within `rtol` relative.
pub fn check_param_updates(
    name: &str,
    got: &BTreeMap<String, f64>,
    want: &Value,
    rtol: f64,
) -> Result<(), String> {
    let want = want
        .as_object()
        .ok_or(format!("{name}: TRL update norms are not an object"))?;
    super::check_lengths(
        &format!("{name}: updated parameters"),
        got.len(),
        want.len(),
    )?;
    for (param, expected) in want {
        let expected = expected
            .as_f64()
            .ok_or(format!("{name}: {param} is not a number"))?;
        let ours = got
            .get(param)
            .ok_or(format!("{name}: we have no parameter {param}"))?;
        if (ours - expected).abs() > rtol * expected.abs() {
            return Err(format!(
                "{name}: update of {param} {ours} vs TRL {expected}"
            ));
        }
    }
    Ok(())
}

/// Compares a run's weight updates with TRL's: the norms of `output_dir`'s
/// `model.safetensors` minus `initial_dir`'s, against `want` (`param_update_norms`).
pub fn assert_run_updates_match(
    name: &str,
    initial_dir: &Path,
    output_dir: &Path,
    want: &Value,
    rtol: f64,
) {
    let file = "model.safetensors";
    let updates = safetensors_update_norms(&initial_dir.join(file), &output_dir.join(file))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_param_updates_match(name, &updates, want, rtol);
}

/// Panicking form of [`check_param_updates`].
pub fn assert_param_updates_match(
    name: &str,
    got: &BTreeMap<String, f64>,
    want: &Value,
    rtol: f64,
) {
    if let Err(e) = check_param_updates(name, got, want, rtol) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn norms(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn updates_fail_when_empty_different_or_apart() {
        let want = json!({"a": 0.5, "b": 0.25});
        assert!(check_param_updates("t", &norms(&[("a", 0.5), ("b", 0.25)]), &want, 1e-2).is_ok());
        assert!(check_param_updates("t", &norms(&[]), &json!({}), 1e-2).is_err());
        assert!(check_param_updates("t", &norms(&[("a", 0.5)]), &want, 1e-2).is_err());
        assert!(check_param_updates("t", &norms(&[("a", 0.5), ("c", 0.25)]), &want, 1e-2).is_err());
        assert!(check_param_updates("t", &norms(&[("a", 0.5), ("b", 0.3)]), &want, 1e-2).is_err());
    }

    #[test]
    fn update_norms_of_a_file_against_itself_are_zero() {
        let file = super::super::repo_root().join("fixtures/models/tiny-qwen2/model.safetensors");
        let got = safetensors_update_norms(&file, &file).unwrap();
        assert!(!got.is_empty());
        assert!(got.values().all(|&v| v == 0.0));
    }
}
