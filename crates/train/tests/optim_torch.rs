//! ftcal's optimizers against torch.optim 2.15 and adabelief-pytorch 0.2.1: the same parameters, gradients
//! and per-tensor learning rates, step by step (fixtures made by scripts/make_optimizer_fixtures.py), then
//! what the fixtures cannot show: updates on a real autodiff model, untouched parameters, and resuming
//! from a saved state bit for bit.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{BatchNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use ftcal_models::TensorMap;
use ftcal_models::weights::{HostData, HostTensor};
use ftcal_train::TrainError;
use ftcal_train::optim::{Optimizer, OptimizerName, OptimizerSettings, clip_grad_norm};
use serde::Deserialize;

/// The agreement asked of every value: |ours − torch| ≤ TOLERANCE · (largest |torch| of the tensor), an
/// error relative to the tensor's scale: a value that shrank by cancellation keeps the rounding error of
/// the larger terms it came from. The optimizers agree to a few f32 roundings (torch fuses multiply-adds,
/// burn does not); a changed hyper-parameter moves the values by orders of magnitude more.
const TOLERANCE: f64 = 1e-6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/optim")
}

fn device() -> Device {
    Device::flex().autodiff()
}

#[derive(Deserialize)]
struct Fixture {
    steps: usize,
    cases: Vec<Case>,
    clip: Vec<ClipCase>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    settings: OptimizerSettings,
    lr: [f64; 2],
}

#[derive(Deserialize)]
struct ClipCase {
    name: String,
    max_norm: f64,
    factor: f32,
}

fn load() -> (Fixture, TensorMap) {
    let dir = fixtures();
    let cases = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let fixture: Fixture = serde_json::from_str(&cases).unwrap();
    let tensors = TensorMap::read(&dir.join("torch.safetensors")).unwrap();
    (fixture, tensors)
}

fn floats(map: &TensorMap, name: &str) -> (Vec<usize>, Vec<f32>) {
    let tensor = map
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` in the fixture"));
    match &tensor.data {
        HostData::Float(values) => (tensor.shape.clone(), values.clone()),
        HostData::Int(_) => panic!("{name} is not float"),
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// Largest deviation relative to the tensor's scale (its largest |torch|), and largest absolute one.
fn deviation(ours: &[f32], torch: &[f32]) -> (f64, f64) {
    assert_eq!(ours.len(), torch.len());
    let scale = torch.iter().fold(0.0f64, |scale, v| scale.max((*v as f64).abs()));
    let absolute = ours
        .iter()
        .zip(torch)
        .fold(0.0f64, |worst, (a, b)| worst.max((*a as f64 - *b as f64).abs()));
    (absolute / scale.max(f64::MIN_POSITIVE), absolute)
}

/// A weight and a bias, as the fixture's two parameter groups.
#[derive(Module, Debug)]
struct Pair {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

impl Pair {
    fn new(weight: &[f32], bias: &[f32], device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight.to_vec(), [3, 4]),
                device,
            )),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias.to_vec(), [4]), device)),
        }
    }

    fn order(&self) -> Vec<ParamId> {
        vec![self.weight.id, self.bias.id]
    }

    /// The same values under new parameter ids, as a model rebuilt from a checkpoint.
    fn rebuilt(&self) -> Self {
        Self::new(
            &values(self.weight.val()),
            &values(self.bias.val()),
            &self.weight.val().device(),
        )
    }
}

/// The fixture's gradients of step `step`, registered as a backward pass would (on the inner device).
fn fixture_grads(pair: &Pair, map: &TensorMap, step: usize) -> GradientsParams {
    let inner = device().inner();
    let (_, weight) = floats(map, "grads.weight");
    let (_, bias) = floats(map, "grads.bias");
    let mut grads = GradientsParams::new();
    grads.register(
        pair.weight.id,
        Tensor::<2>::from_data(
            TensorData::new(weight[step * 12..(step + 1) * 12].to_vec(), [3, 4]),
            &inner,
        ),
    );
    grads.register(
        pair.bias.id,
        Tensor::<1>::from_data(
            TensorData::new(bias[step * 4..(step + 1) * 4].to_vec(), [4]),
            &inner,
        ),
    );
    grads
}

/// A learning rate per tensor: the weight's and the bias's.
fn per_tensor_lr(pair: &Pair, lr: [f64; 2]) -> impl Fn(ParamId) -> f64 + use<> {
    let weight = pair.weight.id;
    move |id| if id == weight { lr[0] } else { lr[1] }
}

fn initial(map: &TensorMap) -> Pair {
    Pair::new(
        &floats(map, "init.weight").1,
        &floats(map, "init.bias").1,
        &device(),
    )
}

#[test]
fn every_optimizer_follows_torch_step_by_step() {
    let (fixture, map) = load();
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let mut pair = initial(&map);
        let mut optimizer = Optimizer::new(&case.settings, "fixture").unwrap();
        let lr = per_tensor_lr(&pair, case.lr);
        let (_, weights) = floats(&map, &format!("{}.weight", case.name));
        let (_, biases) = floats(&map, &format!("{}.bias", case.name));
        let (mut relative, mut absolute) = (0.0f64, 0.0f64);
        for step in 0..fixture.steps {
            let grads = fixture_grads(&pair, &map, step);
            pair = optimizer.step(pair, grads, &lr);
            for (ours, torch) in [
                (values(pair.weight.val()), &weights[step * 12..(step + 1) * 12]),
                (values(pair.bias.val()), &biases[step * 4..(step + 1) * 4]),
            ] {
                let (r, a) = deviation(&ours, torch);
                relative = relative.max(r);
                absolute = absolute.max(a);
            }
        }
        println!(
            "{:<28} max relative deviation {relative:.2e}, absolute {absolute:.2e}",
            case.name
        );
        if relative > TOLERANCE {
            failures.push(format!("{} ({relative:.2e})", case.name));
        }
    }
    assert!(failures.is_empty(), "differ from torch: {}", failures.join(", "));
    let names: Vec<_> = fixture.cases.iter().map(|case| case.settings.name()).collect();
    for name in [
        OptimizerName::Sgd,
        OptimizerName::Adam,
        OptimizerName::Adamw,
        OptimizerName::Adagrad,
        OptimizerName::Rmsprop,
        OptimizerName::Adadelta,
        OptimizerName::Adabelief,
    ] {
        assert!(names.contains(&name), "the fixture has no {name:?} case");
    }
}

/// Three gradients of rank 2, 1 and 3.
#[derive(Module, Debug)]
struct Triple {
    a: Param<Tensor<2>>,
    b: Param<Tensor<1>>,
    c: Param<Tensor<3>>,
}

/// The fixture's three gradients times `factor`.
fn triple_with_grads(map: &TensorMap, factor: f32) -> (Triple, GradientsParams) {
    let device = device();
    let inner = device.clone().inner();
    let triple = Triple {
        a: Param::from_tensor(Tensor::zeros([3, 4], &device)),
        b: Param::from_tensor(Tensor::zeros([4], &device)),
        c: Param::from_tensor(Tensor::zeros([2, 2, 2], &device)),
    };
    let mut grads = GradientsParams::new();
    let scaled = |name: &str| {
        floats(map, name)
            .1
            .into_iter()
            .map(|v| v * factor)
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (
        scaled("clip.grad.0"),
        scaled("clip.grad.1"),
        scaled("clip.grad.2"),
    );
    grads.register(
        triple.a.id,
        Tensor::<2>::from_data(TensorData::new(a, [3, 4]), &inner),
    );
    grads.register(
        triple.b.id,
        Tensor::<1>::from_data(TensorData::new(b, [4]), &inner),
    );
    grads.register(
        triple.c.id,
        Tensor::<3>::from_data(TensorData::new(c, [2, 2, 2]), &inner),
    );
    (triple, grads)
}

#[test]
fn clip_grad_norm_follows_torch() {
    let (fixture, map) = load();
    assert_eq!(fixture.clip.len(), 3);
    for case in &fixture.clip {
        let (triple, grads) = triple_with_grads(&map, case.factor);
        let (grads, total) = clip_grad_norm(&triple, grads, case.max_norm);
        let total = norm(total);
        let (_, expected_total) = floats(&map, &format!("{}.total_norm", case.name));
        let (total_deviation, _) = deviation(&[total as f32], &expected_total);
        let mut worst = total_deviation;
        let ours = [
            values(grads.get::<2>(triple.a.id).unwrap()),
            values(grads.get::<1>(triple.b.id).unwrap()),
            values(grads.get::<3>(triple.c.id).unwrap()),
        ];
        for (index, ours) in ours.iter().enumerate() {
            let (_, torch) = floats(&map, &format!("{}.grad.{index}", case.name));
            worst = worst.max(deviation(ours, &torch).0);
        }
        println!(
            "{:<28} total norm {total:.6e} (torch {:.6e}), max relative deviation {worst:.2e}",
            case.name, expected_total[0]
        );
        assert!(worst <= TOLERANCE, "{}: {worst:.2e}", case.name);
    }
}

#[test]
fn clip_grad_norm_counts_only_parameters_with_gradients() {
    let (_, map) = load();
    let (triple, mut grads) = triple_with_grads(&map, 1.0);
    let c = grads.remove::<3>(triple.c.id).unwrap();
    let (_, a) = floats(&map, "clip.grad.0");
    let (_, b) = floats(&map, "clip.grad.1");
    let expected = a
        .iter()
        .chain(&b)
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let (grads, total) = clip_grad_norm(&triple, grads, 0.5);
    let total = norm(total);
    assert!(
        (total - expected).abs() <= 1e-6 * expected,
        "{total} vs {expected}"
    );
    assert!(grads.get::<3>(triple.c.id).is_none());
    let clipped = values(grads.get::<2>(triple.a.id).unwrap());
    let scale = 0.5 / (expected + 1e-6);
    for (ours, original) in clipped.iter().zip(&a) {
        assert!((*ours as f64 - *original as f64 * scale).abs() <= 1e-6);
    }
    drop(c);

    let (_, total) = clip_grad_norm(&triple, GradientsParams::new(), 1.0);
    assert!(total.is_none(), "no gradients, no norm");
}

/// The norm `clip_grad_norm` returns on the device, read back (0 when no parameter had a gradient, as
/// torch's).
fn norm(total: Option<Tensor<1>>) -> f64 {
    total.map_or(0.0, |total| f64::from(total.into_scalar::<f32>()))
}

/// Every float parameter's id in visiting order: the `order` a caller checkpoints by.
#[derive(Default)]
struct FloatIds(Vec<ParamId>);

impl ModuleVisitor for FloatIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

#[derive(Module, Debug)]
struct Net {
    linear: Linear,
    norm: burn::nn::BatchNorm,
}

/// A real backward pass on an autodiff device: the parameters come back with their ids, still tracked,
/// moved by exactly −lr·grad (plain SGD); BatchNorm's parameters and running statistics, which have no
/// gradient, stay as they were and get no state.
#[test]
fn step_updates_a_trained_module_and_leaves_the_rest() {
    let device = device();
    let net = Net {
        linear: LinearConfig::new(4, 3).init(&device),
        norm: BatchNormConfig::new(3).init(&device),
    };
    let before_weight = values(net.linear.weight.val());
    let before_gamma = values(net.norm.gamma.val());
    let before_mean = values(net.norm.running_mean.value());
    let ids = (net.linear.weight.id, net.norm.gamma.id);

    let x = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
    let loss = net.linear.forward(x.clone()).powf_scalar(2.0).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let weight_grad = values(grads.get::<2>(ids.0).unwrap());
    assert!(grads.get::<1>(ids.1).is_none());

    let mut optimizer = Optimizer::new(&OptimizerSettings::sgd(0.0, false, 0.0), "k").unwrap();
    let net = optimizer.step(net, grads, &|_| 0.1);
    assert_eq!((net.linear.weight.id, net.norm.gamma.id), ids);
    assert!(net.linear.weight.val().is_require_grad());
    let after = values(net.linear.weight.val());
    for ((after, before), grad) in after.iter().zip(&before_weight).zip(&weight_grad) {
        assert_eq!(*after, before + (-0.1f32) * grad);
    }
    assert_eq!(values(net.norm.gamma.val()), before_gamma);
    assert_eq!(values(net.norm.running_mean.value()), before_mean);
    let mut order = FloatIds::default();
    net.visit(&mut order);
    let order = order.0;
    // weight, bias, gamma, beta, running mean and variance: burn visits the statistics as float params.
    assert_eq!(order.len(), 6);
    let state = optimizer.state(&order);
    assert_eq!(
        state.tensors.keys().collect::<Vec<_>>(),
        ["0.step", "1.step"],
        "only the stepped parameters have state"
    );

    // The updated module trains on: a second backward pass reaches the updated weight.
    let loss = net.linear.forward(x).powf_scalar(2.0).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    assert!(grads.get::<2>(net.linear.weight.id).is_some());
}

/// Save after 3 steps, load into a fresh optimizer for a rebuilt model (new ids), 4 more steps: the same
/// bits as 7 uninterrupted steps, for every fixture case.
#[test]
fn resuming_from_a_saved_state_is_bit_identical() {
    let (fixture, map) = load();
    let dir = tempfile::tempdir().unwrap();
    for case in &fixture.cases {
        let mut pair = initial(&map);
        let mut optimizer = Optimizer::new(&case.settings, "k").unwrap();
        let lr = per_tensor_lr(&pair, case.lr);
        for step in 0..3 {
            let grads = fixture_grads(&pair, &map, step);
            pair = optimizer.step(pair, grads, &lr);
        }
        let path = dir.path().join(format!("{}.safetensors", case.name));
        optimizer
            .state(&pair.order())
            .write_safetensors(&path, Default::default())
            .unwrap();

        let mut resumed = pair.rebuilt();
        assert_ne!(resumed.order(), pair.order());
        let mut restored = Optimizer::new(&case.settings, "k").unwrap();
        restored
            .load_state(&TensorMap::read(&path).unwrap(), &resumed.order(), &device())
            .unwrap();
        restored.check_state(&resumed).unwrap();
        let resumed_lr = per_tensor_lr(&resumed, case.lr);
        for step in 3..7 {
            let grads = fixture_grads(&pair, &map, step);
            pair = optimizer.step(pair, grads, &lr);
            let grads = fixture_grads(&resumed, &map, step);
            resumed = restored.step(resumed, grads, &resumed_lr);
        }
        assert_eq!(
            values(resumed.weight.val()),
            values(pair.weight.val()),
            "{}",
            case.name
        );
        assert_eq!(
            values(resumed.bias.val()),
            values(pair.bias.val()),
            "{}",
            case.name
        );
        assert_eq!(
            restored.state(&resumed.order()).tensors,
            optimizer.state(&pair.order()).tensors,
            "{}",
            case.name
        );
    }
}

fn file_error(result: Result<(), TrainError>) -> String {
    match result {
        Err(error @ TrainError::File { .. }) => error.to_string(),
        other => panic!("expected a file error, got {other:?}"),
    }
}

/// A state that does not fit is an error naming the file and the key, never a panic.
#[test]
fn a_mismatched_state_is_an_error() {
    let (_, map) = load();
    let adam: OptimizerSettings = serde_json::from_str(r#"{"name": "adam"}"#).unwrap();
    let mut pair = initial(&map);
    let mut optimizer = Optimizer::new(&adam, "k").unwrap();
    let grads = fixture_grads(&pair, &map, 0);
    pair = optimizer.step(pair, grads, &|_| 0.01);
    let mut state = optimizer.state(&pair.order());
    state.origin = PathBuf::from("run/checkpoints/optimizer.safetensors");
    let order = pair.rebuilt().order();
    let load = |settings: &OptimizerSettings, state: &TensorMap, order: &[ParamId]| {
        let mut optimizer = Optimizer::new(settings, "k").unwrap();
        optimizer.load_state(state, order, &device())
    };

    let message = file_error(load(&OptimizerSettings::sgd(0.9, false, 0.0), &state, &order));
    assert!(
        message.starts_with("run/checkpoints/optimizer.safetensors"),
        "{message}"
    );
    assert!(
        message.contains("`0.exp_avg`") && message.contains("keeps no `exp_avg`"),
        "{message}"
    );

    let message = file_error(load(&adam, &state, &order[..1]));
    assert!(message.contains("`1."), "{message}");

    let mut missing = state.clone();
    missing.tensors.remove("1.exp_avg_sq");
    assert!(file_error(load(&adam, &missing, &order)).contains("`1.exp_avg_sq` is missing"));

    let mut no_step = state.clone();
    no_step.tensors.remove("0.step");
    assert!(file_error(load(&adam, &no_step, &order)).contains("`0.step` is missing"));

    let mut bad_step = state.clone();
    bad_step
        .tensors
        .insert("0.step".into(), HostTensor::float(vec![], vec![0.5]));
    assert!(file_error(load(&adam, &bad_step, &order)).contains("`0.step`"));

    let mut foreign_key = state.clone();
    foreign_key
        .tensors
        .insert("weight".into(), HostTensor::float(vec![1], vec![0.0]));
    assert!(file_error(load(&adam, &foreign_key, &order)).contains("`weight`"));

    let mut two_shapes = state.clone();
    two_shapes
        .tensors
        .insert("0.exp_avg".into(), HostTensor::float(vec![12], vec![0.0; 12]));
    assert!(file_error(load(&adam, &two_shapes, &order)).contains("the other buffers of parameter 0 [12]"));

    let mut short = state.clone();
    short
        .tensors
        .insert("1.exp_avg".into(), HostTensor::float(vec![4], vec![0.0; 3]));
    assert!(file_error(load(&adam, &short, &order)).contains("holds 3 values"));

    // Well-formed, but for a weight of another shape: load_state cannot tell, check_state can.
    let mut reshaped = state.clone();
    for name in ["0.exp_avg", "0.exp_avg_sq"] {
        let tensor = reshaped.tensors.get_mut(name).unwrap();
        tensor.shape = vec![4, 3];
    }
    let mut optimizer = Optimizer::new(&adam, "k").unwrap();
    let rebuilt = pair.rebuilt();
    optimizer
        .load_state(&reshaped, &rebuilt.order(), &device())
        .unwrap();
    let message = file_error(optimizer.check_state(&rebuilt));
    assert!(message.contains("`weight` has shape [4, 3]"), "{message}");
    // ... and ids of another model.
    let mut optimizer = Optimizer::new(&adam, "k").unwrap();
    optimizer.load_state(&state, &order, &device()).unwrap();
    assert!(file_error(optimizer.check_state(&pair)).contains("belongs to no parameter"));

    // A failed load leaves the optimizer as it was.
    let mut optimizer = Optimizer::new(&adam, "k").unwrap();
    optimizer.load_state(&state, &order, &device()).unwrap();
    assert!(optimizer.load_state(&missing, &order, &device()).is_err());
    assert_eq!(optimizer.state(&order).tensors, state.tensors);
}
