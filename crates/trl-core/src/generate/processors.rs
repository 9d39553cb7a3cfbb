//! transformers' logits processors as pure functions over one row of logits `[vocab]`.
//!
//! Each follows the class of the same name in transformers 5.23's
//! `generation/logits_process.py` (filtered entries become `-inf`, its `filter_value`), with
//! `min_tokens_to_keep = 1` as sampling without beams uses. None sorts the whole vocabulary:
//! top-k and top-p work on a partial selection of the largest logits. [`process_row`] applies
//! them in the order `GenerationMixin._get_logits_processor` builds them.

use super::options::GenerationOptions;

/// `RepetitionPenaltyLogitsProcessor`: every token id that occurs in `previous` (prompt,
/// padding included, and generated tokens, as transformers passes `input_ids`) has its logit
/// divided by `penalty` when positive and multiplied by it when negative. Each id is penalised
/// once however often it occurs (transformers gathers then scatters).
pub fn repetition_penalty(row: &mut [f32], previous: &[u32], penalty: f32) {
    let mut seen = vec![false; row.len()];
    for &id in previous {
        let id = id as usize;
        // ids past the output vocabulary cannot be generated: transformers drops them too
        if id < row.len() && !seen[id] {
            seen[id] = true;
            let logit = row[id];
            row[id] = if logit < 0.0 {
                logit * penalty
            } else {
                logit / penalty
            };
        }
    }
}

/// `MinNewTokensLengthLogitsProcessor`: while fewer than `min_new_tokens` tokens were
/// generated, no end-of-sequence id may be chosen.
pub fn suppress_eos(row: &mut [f32], eos_token_ids: &[u32]) {
    for &id in eos_token_ids {
        if let Some(logit) = row.get_mut(id as usize) {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// `TemperatureLogitsWarper`: `logits / temperature`.
pub fn temperature(row: &mut [f32], temperature: f32) {
    for logit in row {
        *logit /= temperature;
    }
}

/// `TopKLogitsWarper`: removes every logit below the `top_k`-th largest (ties with it stay).
pub fn top_k(row: &mut [f32], top_k: usize) {
    let k = top_k.max(1).min(row.len());
    if k == row.len() {
        return;
    }
    let mut values = row.to_vec();
    // O(vocab) partial selection: values[k - 1] is the k-th largest
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    for logit in row {
        if *logit < kth {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper`: keeps the most likely tokens until the probability mass of the tokens
/// before the next one reaches `top_p` (transformers removes a token when the ascending
/// cumulative probability up to it is `<= 1 - top_p`, which keeps exactly those tokens whose
/// strictly more likely tokens sum to less than `top_p`); the most likely token always stays.
pub fn top_p(row: &mut [f32], top_p: f32) {
    if top_p >= 1.0 {
        return;
    }
    let probs = softmax(row);
    let mut candidates = 64.min(row.len());
    let kept = loop {
        let order = largest_first(row, candidates);
        if let Some(count) = kept_by_mass(&order, &probs, top_p as f64) {
            break order[..count].to_vec();
        }
        if candidates == row.len() {
            break order;
        }
        candidates = (candidates * 4).min(row.len());
    };
    let mut keep = vec![false; row.len()];
    for index in kept {
        keep[index] = true;
    }
    for (logit, keep) in row.iter_mut().zip(keep) {
        if !keep {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// How many of `order` (most likely first) top-p keeps, or `None` when `order` ends before
/// the mass reaches `top_p` (more candidates are needed).
fn kept_by_mass(order: &[usize], probs: &[f64], top_p: f64) -> Option<usize> {
    let mut mass_before = 0.0f64;
    for (count, &index) in order.iter().enumerate() {
        if count > 0 && mass_before >= top_p {
            return Some(count);
        }
        mass_before += probs[index];
    }
    (mass_before >= top_p).then_some(order.len())
}

/// `MinPLogitsWarper`: removes tokens whose probability is below `min_p` times the top
/// token's; the top token always stays.
pub fn min_p(row: &mut [f32], min_p: f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    // p_i < min_p * p_max  <=>  exp(l_i - l_max) < min_p (the normaliser cancels)
    for logit in row {
        if (*logit - max).exp() < min_p && *logit != max {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// Indices of the `count` largest logits, largest first, found by partial selection.
pub fn largest_first(row: &[f32], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    let count = count.clamp(1, row.len().max(1));
    if count < order.len() {
        order.select_nth_unstable_by(count - 1, |&a, &b| row[b].total_cmp(&row[a]));
        order.truncate(count);
    }
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    order
}

/// Probabilities of a row (f64 accumulation; `-inf` gives 0).
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = row.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Every processor the options switch on, in transformers' order: repetition penalty,
/// min-new-tokens, then (sampling only) temperature, top-k, top-p, min-p.
/// `previous` is the row's whole sequence so far (padded prompt + generated tokens).
pub fn process_row(
    row: &mut [f32],
    previous: &[u32],
    generated: usize,
    options: &GenerationOptions,
) {
    if options.repetition_penalty != 1.0 {
        repetition_penalty(row, previous, options.repetition_penalty);
    }
    if generated < options.min_new_tokens {
        suppress_eos(row, &options.eos_token_ids);
    }
    if !options.do_sample {
        return;
    }
    if options.temperature != 1.0 {
        temperature(row, options.temperature);
    }
    if options.top_k != 0 {
        top_k(row, options.top_k);
    }
    if options.top_p < 1.0 {
        top_p(row, options.top_p);
    }
    if let Some(threshold) = options.min_p {
        min_p(row, threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_the_mass() {
        // probabilities 0.5, 0.3, 0.2 (in log space)
        let mut row = vec![0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        top_p(&mut row, 0.7);
        assert!(row[0].is_infinite() && row[1].is_finite() && row[2].is_finite());
        let mut row = vec![0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        top_p(&mut row, 0.4);
        assert!(row[0].is_infinite() && row[1].is_finite() && row[2].is_infinite());
    }

    #[test]
    fn top_p_searches_past_the_first_candidates_on_a_flat_row() {
        // 1024 equal probabilities of 2^-10 each: sums are exact
        let mut row = vec![0.0f32; 1024];
        top_p(&mut row, 0.5);
        assert_eq!(row.iter().filter(|l| l.is_finite()).count(), 512);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth_value() {
        let mut row = vec![1.0, 3.0, 2.0, 2.0, 0.0];
        top_k(&mut row, 2);
        assert_eq!(row.iter().filter(|l| l.is_finite()).count(), 3);
    }

    #[test]
    fn repetition_penalty_penalises_each_id_once() {
        let mut row = vec![2.0, -2.0, 1.0];
        repetition_penalty(&mut row, &[0, 0, 1, 7], 2.0);
        assert_eq!(row, vec![1.0, -4.0, 1.0]);
    }
}
