//! Times one convolution's forward and backward pass, ftcal's against burn-flex's, on a layer list.
//!
//!     cargo run --release -p ftcal-kernels --features flex --example conv_layers
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

type Conv = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>;

fn time(conv: Conv, shape: [usize; 7], backward: bool) -> f64 {
    let [batch, cin, cout, size, kernel, stride, padding] = shape;
    let device = Device::flex().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([batch, cin, size, size], normal, &device).require_grad();
    let w = Tensor::<4>::random([cout, cin, kernel, kernel], normal, &device).require_grad();
    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let y = conv(x.clone(), w.clone(), None, options.clone());
        if backward {
            let grads = y.sum().backward();
            let _ = (
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
            );
        } else {
            let _ = y.into_data();
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn main() {
    let layers: Vec<[usize; 7]> = std::env::args()
        .nth(1)
        .map(|list| {
            list.split(';')
                .map(|layer| {
                    let v: Vec<usize> = layer.split(',').map(|n| n.parse().unwrap()).collect();
                    v.try_into().unwrap()
                })
                .collect()
        })
        .unwrap_or_else(|| {
            vec![
                [64, 3, 16, 32, 3, 1, 1],
                [64, 16, 16, 32, 3, 1, 1],
                [64, 16, 32, 32, 3, 2, 1],
                [64, 32, 32, 16, 3, 1, 1],
                [64, 16, 32, 32, 1, 2, 0],
                [64, 64, 64, 8, 3, 1, 1],
                [64, 128, 128, 4, 3, 1, 1],
                [32, 64, 64, 16, 3, 1, 1],
                [32, 512, 512, 2, 3, 1, 1],
                [16, 64, 256, 56, 1, 1, 0],
                [16, 3, 64, 224, 7, 2, 3],
            ]
        });
    println!("batch,cin,cout,size,kernel,stride,pad | fwd ftcal/burn ms | fwd+bwd ftcal/burn ms");
    for shape in layers {
        let f = (
            time(ftcal_kernels::conv2d, shape, false),
            time(burn_conv2d, shape, false),
        );
        let b = (
            time(ftcal_kernels::conv2d, shape, true),
            time(burn_conv2d, shape, true),
        );
        println!("{shape:?} | {:.2} / {:.2} | {:.2} / {:.2}", f.0, f.1, b.0, b.1);
    }
}
