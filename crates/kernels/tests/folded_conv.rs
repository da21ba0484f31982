//! ftcal's batch-folded convolution against burn's own on flex: the output and both gradients, on
//! random shapes (odd sizes, stride 2, asymmetric padding, dilation, batch 1, 1×1 and 7×7 kernels; rows
//! narrower and wider than the 32 columns where im2col switches from per-tap offsets to row copies), and
//! the gradients against finite differences.

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use ftcal_kernels::conv2d;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    channels_in: usize,
    channels_out: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    options: ConvOptions<2>,
    bias: bool,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..6,
        1usize..7,
        [1usize..4, 1usize..4],
        [1usize..3, 1usize..3],
        [(0usize..3, 0usize..3), (0usize..3, 0usize..3)],
        [1usize..3, 1usize..3],
        [3usize..12, 3usize..44],
        any::<bool>(),
    )
        .prop_map(
            |(batch, channels_in, channels_out, kernel, stride, padding, dilation, extra, bias)| {
                // An input at least as large as the dilated kernel, so that every case has an output.
                let input = std::array::from_fn(|axis| dilation[axis] * (kernel[axis] - 1) + extra[axis] - 2);
                Case {
                    batch,
                    channels_in,
                    channels_out,
                    input,
                    kernel,
                    options: ConvOptions::new_with_padding(stride, padding, dilation, 1),
                    bias,
                }
            },
        )
}

struct Operands {
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    output_grad: Tensor<4>,
}

fn operands(case: &Case, device: &Device) -> Operands {
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::random(
        [case.batch, case.channels_in, case.input[0], case.input[1]],
        normal,
        device,
    );
    let weight = Tensor::random(
        [
            case.channels_out,
            case.channels_in,
            case.kernel[0],
            case.kernel[1],
        ],
        normal,
        device,
    );
    let bias = case
        .bias
        .then(|| Tensor::random([case.channels_out], normal, device));
    let out_shape = burn_conv2d(x.clone(), weight.clone(), None, case.options.clone()).dims();
    let output_grad = Tensor::random(out_shape, normal, device);
    Operands {
        x,
        weight,
        bias,
        output_grad,
    }
}

/// The output and the gradients of x, weight and bias of `sum(conv(x, weight, bias) · output_grad)`.
fn run(
    convolution: fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>,
    operands: &Operands,
    options: &ConvOptions<2>,
) -> Vec<TensorData> {
    let device = Device::flex().autodiff();
    let x = Tensor::from_data(operands.x.to_data(), &device).require_grad();
    let weight = Tensor::from_data(operands.weight.to_data(), &device).require_grad();
    let bias = operands
        .bias
        .as_ref()
        .map(|bias| Tensor::<1>::from_data(bias.to_data(), &device).require_grad());
    let output_grad = Tensor::from_data(operands.output_grad.to_data(), &device);
    let out = convolution(x.clone(), weight.clone(), bias.clone(), options.clone());
    let grads = (out.clone() * output_grad).sum().backward();
    let mut results = vec![
        out.to_data(),
        x.grad(&grads).unwrap().to_data(),
        weight.grad(&grads).unwrap().to_data(),
    ];
    results.extend(bias.map(|bias| bias.grad(&grads).unwrap().to_data()));
    results
}

fn assert_close(ours: &TensorData, theirs: &TensorData, what: &str, case: &Case) {
    let ours = ours.try_to_vec::<f32>().unwrap();
    let theirs = theirs.try_to_vec::<f32>().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}'s size for {case:?}");
    // Float32 round-off grows with the tensor's typical magnitude (a long sum's terms cancel to a
    // small element as often as not), so the tolerance is relative to its root mean square.
    let rms = (theirs.iter().map(|b| b * b).sum::<f32>() / theirs.len() as f32).sqrt();
    for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs().max(rms)),
            "{what}[{index}]: ftcal {a}, burn {b} for {case:?}"
        );
    }
}

/// ftcal's output and gradients (x, weight, and bias when there is one) against burn's, on `case`.
fn assert_matches_burns(case: &Case) {
    let operands = operands(case, &Device::flex());
    let ours = run(conv2d, &operands, &case.options);
    let theirs = run(burn_conv2d, &operands, &case.options);
    assert_eq!(ours.len(), theirs.len());
    for ((ours, theirs), what) in ours.iter().zip(&theirs).zip(["output", "dx", "dweight", "dbias"]) {
        assert_close(ours, theirs, what, case);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_burns_convolution_and_its_gradients(case in cases()) {
        assert_matches_burns(&case);
    }
}

/// `sum(conv(x, w) · g)` is linear in x and in w, so a central difference of any step is the exact
/// derivative up to float32 rounding: a check that does not lean on burn's own backward pass.
#[test]
fn gradients_match_finite_differences() {
    let case = Case {
        batch: 2,
        channels_in: 3,
        channels_out: 4,
        input: [7, 6],
        kernel: [3, 3],
        options: ConvOptions::new_with_padding([2, 1], [(1, 2), (0, 1)], [1, 2], 1),
        bias: false,
    };
    let operands = operands(&case, &Device::flex());
    let results = run(conv2d, &operands, &case.options);
    let loss = |x: &Tensor<4>, weight: &Tensor<4>| -> f64 {
        let out = conv2d(x.clone(), weight.clone(), None, case.options.clone());
        let out = out.into_data().try_to_vec::<f32>().unwrap();
        let output_grad = operands.output_grad.to_data().try_to_vec::<f32>().unwrap();
        out.iter()
            .zip(&output_grad)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let step = 0.5;
    for (which, analytic) in [(0, &results[1]), (1, &results[2])] {
        let analytic = analytic.try_to_vec::<f32>().unwrap();
        let base = if which == 0 { &operands.x } else { &operands.weight };
        let values = base.to_data().try_to_vec::<f32>().unwrap();
        for index in (0..values.len()).step_by(7) {
            let shifted = |delta: f32| {
                let mut changed = values.clone();
                changed[index] += delta;
                Tensor::<4>::from_data(TensorData::new(changed, base.dims()), &Device::flex())
            };
            let (plus, minus) = (shifted(step), shifted(-step));
            let numeric = if which == 0 {
                (loss(&plus, &operands.weight) - loss(&minus, &operands.weight)) / (2.0 * step as f64)
            } else {
                (loss(&operands.x, &plus) - loss(&operands.x, &minus)) / (2.0 * step as f64)
            };
            let exact = analytic[index] as f64;
            assert!(
                (numeric - exact).abs() <= 1e-3 * (1.0 + exact.abs()),
                "{} gradient [{index}]: finite difference {numeric}, kernel {exact}",
                ["input", "weight"][which]
            );
        }
    }
}

/// Grouped convolutions are burn's: the same numbers as calling burn directly.
#[test]
fn grouped_convolutions_are_burns() {
    let device = Device::flex();
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([2, 4, 5, 5], normal, &device);
    let weight = Tensor::<4>::random([6, 2, 3, 3], normal, &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
    let ours = conv2d(x.clone(), weight.clone(), None, options.clone());
    let theirs = burn_conv2d(x, weight, None, options);
    ours.into_data().assert_eq(&theirs.into_data(), true);
}

/// A pointwise convolution whose group is one image reads that image as its im2col matrix and writes
/// its column gradient as the input gradient: batch 1, and a plane large enough for one-image groups.
#[test]
fn pointwise_convolutions_match_burns() {
    for (batch, channels_in, size) in [(1, 5, 7), (2, 16, 256)] {
        let case = Case {
            batch,
            channels_in,
            channels_out: 3,
            input: [size, size + 2],
            kernel: [1, 1],
            options: ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
            bias: false,
        };
        assert_matches_burns(&case);
    }
}

/// Stride-1 rows of 32 output columns and more, which im2col and col2im copy as runs between the
/// padding (narrower or strided rows go by per-tap offsets), with padding and dilation on both sides.
#[test]
fn wide_rows_match_burns() {
    for (padding, dilation) in [([(1, 1), (1, 1)], [1, 1]), ([(2, 0), (0, 3)], [2, 2])] {
        let case = Case {
            batch: 3,
            channels_in: 2,
            channels_out: 3,
            input: [9, 40],
            kernel: [3, 3],
            options: ConvOptions::new_with_padding([1, 1], padding, dilation, 1),
            bias: false,
        };
        assert_matches_burns(&case);
    }
}
