//! The LM head and label log-probs a chunk of tokens at a time, forward and backward, in
//! burn's own ops: what backends without a hand-written kernel (wgpu, cuda) run so that
//! neither the `[tokens, vocab]` logits nor their log-softmax are kept for the backward. The
//! backward recomputes each chunk's logits from the hidden states and one log-sum-exp per
//! token, as the flex kernel of `head_logprobs_cpu` does.
//!
//! Pure functions of plain tensors (no autodiff inside): `blocked.rs` records them as one
//! graph node.

use burn::tensor::{Int, Tensor};

use crate::precision;

/// Columns of the forward output: the label's log-prob, then entropy, argmax, `log Σ p²` and
/// mean logit (the [`super::TokenStats`] of each position), as the flex kernel writes them.
pub const COLUMNS: usize = 5;

/// Tokens per chunk for a vocabulary of `vocab`: about 16M logits alive at a time.
pub fn tokens_per_chunk(vocab: usize) -> usize {
    ((1usize << 24) / vocab.max(1)).max(16)
}

/// The head's inputs besides the hidden states.
#[derive(Clone, Debug)]
pub struct Head {
    /// `[vocab, hidden]` when `vocab_major` (an embedding table), else `[hidden, vocab]`.
    pub weight: Tensor<2>,
    /// `[hidden, vocab]` in the dtype the logits' matmul runs in (the mixed-precision format
    /// when one is on): cast once per call, not once per chunk.
    matmul_weight: Tensor<2>,
    /// `[tokens]`, inside the vocabulary.
    pub labels: Tensor<1, Int>,
    pub vocab_major: bool,
    pub temperature: f64,
    /// Tokens per chunk.
    pub chunk: usize,
}

impl Head {
    /// The head of `weight` (layout per `vocab_major`) for `labels`.
    pub fn new(
        weight: Tensor<2>,
        labels: Tensor<1, Int>,
        vocab_major: bool,
        temperature: f64,
        chunk: usize,
    ) -> Self {
        let columns = match vocab_major {
            true => weight.clone().transpose(),
            false => weight.clone(),
        };
        let matmul_weight = match precision::autocast() {
            Some(half) => columns.cast(half.dtype()),
            None => columns,
        };
        Head {
            weight,
            matmul_weight,
            labels,
            vocab_major,
            temperature,
            chunk,
        }
    }

    /// `hidden` `[rows, hidden]` -> logits `[rows, vocab]` divided by the temperature (the
    /// matmul in the mixed-precision format when one is on, the logits in f32).
    fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let dtype = hidden.dtype();
        let logits = hidden
            .cast(self.matmul_weight.dtype())
            .matmul(self.matmul_weight.clone())
            .cast(dtype);
        match self.temperature {
            1.0 => logits,
            t => logits.div_scalar(t as f32),
        }
    }

    /// The chunk starts and lengths covering `tokens`.
    fn chunks(&self, tokens: usize) -> impl Iterator<Item = (usize, usize)> {
        let chunk = self.chunk.max(1);
        (0..tokens)
            .step_by(chunk)
            .map(move |start| (start, chunk.min(tokens - start)))
    }
}

/// Forward: `hidden` `[tokens, hidden]` -> `[tokens, COLUMNS]` and the log-sum-exp of each
/// token's logits `[tokens, 1]`.
pub fn forward(hidden: &Tensor<2>, head: &Head) -> (Tensor<2>, Tensor<2>) {
    let tokens = hidden.dims()[0];
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for (start, n) in head.chunks(tokens) {
        let logits = head.logits(hidden.clone().narrow(0, start, n));
        let labels = head.labels.clone().narrow(0, start, n).reshape([n, 1]);
        // [n, 1] each
        let max = logits.clone().max_dim(1);
        let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
        let log_probs = logits.clone() - lse.clone();
        let logp = log_probs.clone().gather(1, labels);
        let entropy = (log_probs.clone().exp() * log_probs.clone())
            .sum_dim(1)
            .neg();
        let argmax = logits.clone().argmax(1).float();
        let doubled = log_probs * 2.0;
        let doubled_max = doubled.clone().max_dim(1);
        let log_sum_sq = (doubled - doubled_max.clone()).exp().sum_dim(1).log() + doubled_max;
        let mean = logits.mean_dim(1);
        outs.push(Tensor::cat(
            vec![logp, entropy, argmax, log_sum_sq, mean],
            1,
        ));
        lses.push(lse);
    }
    (Tensor::cat(outs, 0), Tensor::cat(lses, 0))
}

/// Backward: the gradients of `hidden` `[tokens, hidden]` and of the head's weight (its own
/// layout) for `grad` `[tokens, 1]`, the gradient of the log-prob column, each only when
/// `needs` says so (a frozen head, as under LoRA, costs no weight gradient); `lse` from
/// [`forward`]. Per chunk `dlogits = grad * (onehot(label) - softmax) / temperature`.
pub fn backward(
    hidden: &Tensor<2>,
    head: &Head,
    lse: &Tensor<2>,
    grad: Tensor<2>,
    needs: [bool; 2],
) -> (Option<Tensor<2>>, Option<Tensor<2>>) {
    let tokens = hidden.dims()[0];
    let [need_hidden, need_weight] = needs;
    let mut d_weight = need_weight.then(|| head.weight.zeros_like());
    let mut d_hidden = Vec::new();
    let scale = 1.0 / head.temperature;
    for (start, n) in head.chunks(tokens) {
        let rows = hidden.clone().narrow(0, start, n);
        let logits = head.logits(rows.clone());
        let g = grad.clone().narrow(0, start, n) * scale;
        let probs = (logits - lse.clone().narrow(0, start, n)).exp();
        let labels = head.labels.clone().narrow(0, start, n).reshape([n, 1]);
        // [n, vocab]: -g p everywhere, + g at the label
        let d_logits =
            (probs * g.clone().neg()).scatter(1, labels, g, burn::tensor::IndexingUpdateOp::Add);
        if need_hidden {
            d_hidden.push(match head.vocab_major {
                true => d_logits.clone().matmul(head.weight.clone()),
                false => d_logits.clone().matmul(head.weight.clone().transpose()),
            });
        }
        d_weight = d_weight.map(|sum| match head.vocab_major {
            true => sum + d_logits.transpose().matmul(rows),
            false => sum + rows.transpose().matmul(d_logits),
        });
    }
    let d_hidden = (need_hidden && !d_hidden.is_empty()).then(|| Tensor::cat(d_hidden, 0));
    (d_hidden, d_weight)
}
