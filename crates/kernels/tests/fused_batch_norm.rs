//! ftcal's fused BatchNorm training pass against burn's own on flex: output, statistics and the
//! gradients of x, γ and β on random shapes (batch 1, 1×1 planes, odd sizes), and against finite
//! differences; its inference pass against burn's, in place without touching a shared input.

use burn::tensor::module::{batch_norm as burn_batch_norm, batch_norm_train as burn_batch_norm_train};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use ftcal_kernels::{batch_norm_inference, batch_norm_train};
use proptest::prelude::*;

type BatchNorm = fn(Tensor<4>, Tensor<1>, Tensor<1>, f64) -> burn::tensor::module::BatchNormTrainOutput<4>;

/// Output, mean, variance, and the gradients of x, γ, β of `sum(batch_norm(x) · g)`.
fn run(
    batch_norm: BatchNorm,
    x: &TensorData,
    gamma: &TensorData,
    beta: &TensorData,
    g: &TensorData,
) -> Vec<Vec<f32>> {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
    let gamma = Tensor::<1>::from_data(gamma.clone(), &device).require_grad();
    let beta = Tensor::<1>::from_data(beta.clone(), &device).require_grad();
    let result = batch_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    let grads = (result.output.clone() * Tensor::from_data(g.clone(), &device))
        .sum()
        .backward();
    [
        result.output.into_data(),
        result.mean.into_data(),
        result.variance.into_data(),
        x.grad(&grads).unwrap().into_data(),
        gamma.grad(&grads).unwrap().into_data(),
        beta.grad(&grads).unwrap().into_data(),
    ]
    .into_iter()
    .map(|data| data.try_to_vec::<f32>().unwrap())
    .collect()
}

fn random(shape: Vec<usize>, mean: f64) -> TensorData {
    let values = Tensor::<1>::random(
        [shape.iter().product::<usize>()],
        Distribution::Normal(mean, 2.0),
        &Device::flex(),
    );
    TensorData::new(values.into_data().try_to_vec::<f32>().unwrap(), shape)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn matches_burns_batch_norm_and_its_gradients(batch in 1usize..5, channels in 1usize..6, height in 1usize..6, width in 1usize..6) {
        prop_assume!(batch * height * width > 1);
        let shape = vec![batch, channels, height, width];
        let (x, g) = (random(shape.clone(), 0.5), random(shape, 0.0));
        let (gamma, beta) = (random(vec![channels], 1.0), random(vec![channels], 0.0));
        let ours = run(batch_norm_train, &x, &gamma, &beta, &g);
        let theirs = run(burn_batch_norm_train, &x, &gamma, &beta, &g);
        for ((ours, theirs), what) in ours.iter().zip(&theirs).zip(["output", "mean", "variance", "dx", "dgamma", "dbeta"]) {
            prop_assert_eq!(ours.len(), theirs.len());
            for (index, (a, b)) in ours.iter().zip(theirs).enumerate() {
                prop_assert!((a - b).abs() <= 2e-4 * (1.0 + b.abs()), "{}[{}]: ftcal {}, burn {}", what, index, a, b);
            }
        }
    }

    #[test]
    fn inference_matches_burns_and_leaves_a_shared_input_alone(batch in 1usize..5, channels in 1usize..6, height in 1usize..6, width in 1usize..6) {
        let shape = vec![batch, channels, height, width];
        let device = Device::flex();
        let x = Tensor::<4>::from_data(random(shape, 0.5), &device);
        let statistics = [random(vec![channels], 1.0), random(vec![channels], 0.0), random(vec![channels], 0.5)];
        let [gamma, beta, mean] = statistics.map(|values| Tensor::<1>::from_data(values, &device));
        let variance = Tensor::<1>::from_data(random(vec![channels], 0.0), &device).abs();
        let theirs = burn_batch_norm(x.clone(), gamma.clone(), beta.clone(), mean.clone(), variance.clone(), 1e-5);
        let held = x.to_data();
        let ours = batch_norm_inference(x.clone(), gamma, beta, mean, variance, 1e-5);
        prop_assert_eq!(x.to_data(), held, "the input another tensor holds changed");
        let (ours, theirs) = (ours.to_data().try_to_vec::<f32>().unwrap(), theirs.to_data().try_to_vec::<f32>().unwrap());
        // burn divides by the standard deviation; the fused pass multiplies by γ / std, as PyTorch does.
        let scale = theirs.iter().fold(1.0f32, |largest, value| largest.max(value.abs()));
        for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            prop_assert!((a - b).abs() <= 1e-5 * scale, "output[{}]: ftcal {}, burn {}", index, a, b);
        }
    }
}

/// The gradients against central differences of the loss computed in float64 on the host.
#[test]
fn gradients_match_finite_differences() {
    let shape = vec![3, 2, 3, 2];
    let (x, g) = (random(shape.clone(), 0.5), random(shape.clone(), 0.0));
    let (gamma, beta) = (random(vec![2], 1.0), random(vec![2], 0.0));
    let analytic = run(batch_norm_train, &x, &gamma, &beta, &g);
    let g = g.try_to_vec::<f32>().unwrap();
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
        let out = batch_norm_train(
            Tensor::from_data(TensorData::new(x.to_vec(), shape.clone()), &Device::flex()),
            Tensor::from_data(TensorData::new(gamma.to_vec(), [2]), &Device::flex()),
            Tensor::from_data(TensorData::new(beta.to_vec(), [2]), &Device::flex()),
            1e-5,
        );
        let out = out.output.into_data().try_to_vec::<f32>().unwrap();
        out.iter()
            .zip(&g)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let mut inputs = [x, gamma, beta].map(|data| data.try_to_vec::<f32>().unwrap());
    let step = 1e-2;
    for (which, analytic) in analytic[3..].iter().enumerate() {
        for index in 0..inputs[which].len() {
            let original = inputs[which][index];
            inputs[which][index] = original + step;
            let plus = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][index] = original - step;
            let minus = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][index] = original;
            let numeric = (plus - minus) / (2.0 * f64::from(step));
            let exact = f64::from(analytic[index]);
            assert!(
                (numeric - exact).abs() <= 2e-2 * (1.0 + exact.abs()),
                "{} gradient [{index}]: finite difference {numeric}, kernel {exact}",
                ["x", "gamma", "beta"][which]
            );
        }
    }
}
