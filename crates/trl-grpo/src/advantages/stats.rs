//! NaN-aware statistics with TRL's semantics (`torch.nanmean`, `trl.trainer.utils.nanstd`).

/// Mean of the non-NaN values; NaN when there are none.
pub fn nanmean(values: &[f64]) -> f64 {
    let (sum, count) = values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Unbiased (n - 1) standard deviation of the non-NaN values; NaN with fewer than two.
pub fn nanstd(values: &[f64]) -> f64 {
    let mean = nanmean(values);
    let squares: Vec<f64> = values.iter().map(|v| (v - mean).powi(2)).collect();
    let count = values.iter().filter(|v| !v.is_nan()).count();
    if count < 2 {
        return f64::NAN;
    }
    (nanmean(&squares) * count as f64 / (count - 1) as f64).sqrt()
}

/// `torch.isclose(x, 0)` with its default `atol = 1e-8` (false for NaN).
pub fn is_close_to_zero(x: f64) -> bool {
    x.abs() <= 1e-8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_values_are_left_out() {
        let nan = f64::NAN;
        assert_eq!(nanmean(&[1.0, nan, 3.0]), 2.0);
        assert!(nanmean(&[nan, nan]).is_nan());
        // unbiased: values 1, 3 -> variance 2
        assert_eq!(nanstd(&[1.0, nan, 3.0]), 2f64.sqrt());
        assert!(nanstd(&[nan, 4.0]).is_nan());
        assert!(!is_close_to_zero(nan) && is_close_to_zero(0.0));
    }
}
