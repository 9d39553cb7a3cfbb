//! Forward + backward matmul throughput of the compiled-in CPU backend at the shapes of the
//! benchmark model (hidden 256, intermediate 1024, vocab 512, 8 x 256 tokens): the number
//! ARCHITECTURE.md quotes for the backend choice. Run with
//! `cargo run --release --example matmul_gflops`.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

fn main() {
    let device = Device::default().autodiff();
    let tokens = 8 * 256;
    for (name, k, n) in [
        ("qkv/o 256x256", 256, 256),
        ("mlp up 256x1024", 256, 1024),
        ("mlp down 1024x256", 1024, 256),
        ("lm head 256x512", 256, 512),
    ] {
        let x = Tensor::<2>::random([tokens, k], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let w =
            Tensor::<2>::random([k, n], Distribution::Normal(0.0, 0.02), &device).require_grad();
        // forward: 2*t*k*n, backward: two more matmuls of the same size
        let flops = 3.0 * 2.0 * (tokens * k * n) as f64;
        let mut best = f64::MAX;
        for _ in 0..10 {
            let start = Instant::now();
            let grads = x.clone().matmul(w.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gw = w.grad(&grads).unwrap();
            let _ = (gx.sum().into_scalar::<f32>(), gw.sum().into_scalar::<f32>());
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{name:<20} [{tokens}x{k}] @ [{k}x{n}]: {:.1} GFLOP/s (fwd+bwd, best of 10)",
            flops / best / 1e9
        );
    }
}
