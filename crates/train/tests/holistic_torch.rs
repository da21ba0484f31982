//! Holistic Transfer's losses against PyTorch: the distillation loss and the rank regulariser's nuclear
//! norm, their values and their gradients, and the regulariser's term built on it (fixtures from
//! `scripts/make_holistic_fixtures.py`).

use burn::tensor::{Device, Int, Tensor, TensorData};
use ftcal_models::TensorMap;
use ftcal_models::weights::HostData;
use ftcal_train::holistic::distillation::distillation_loss;
use ftcal_train::holistic::rank::{RankRegularizationSettings, normalized_nuclear_norm};
use serde_json::Value;

fn fixtures() -> (TensorMap, Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/holistic");
    let tensors = TensorMap::read(&dir.join("holistic.safetensors")).unwrap();
    let cases = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (tensors, cases)
}

fn tensor(map: &TensorMap, key: &str, device: &Device) -> Tensor<2> {
    let tensor = &map.tensors[key];
    let HostData::Float(values) = &tensor.data else {
        panic!("{key} is a float tensor")
    };
    Tensor::from_data(
        TensorData::new(values.clone(), [tensor.shape[0], tensor.shape[1]]),
        device,
    )
}

fn values(tensor: Tensor<2>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance * (1.0 + e.abs()),
            "{what}[{index}]: {a} vs torch {e}"
        );
    }
}

#[test]
fn distillation_loss_and_gradient_match_torch() {
    let (map, cases) = fixtures();
    let device = Device::flex().autodiff();
    for case in ["absent", "all"] {
        let key = format!("distillation.{case}");
        let spec = &cases[&key];
        let absent: Vec<i64> = (spec["absent"].as_array().unwrap().iter())
            .map(|c| c.as_i64().unwrap())
            .collect();
        let columns = Tensor::<1, Int>::from_data(TensorData::new(absent.clone(), [absent.len()]), &device);
        let student = tensor(&map, &format!("{key}.student"), &device).require_grad();
        let teacher = tensor(&map, &format!("{key}.teacher"), &device);
        let loss = distillation_loss(
            student.clone().select(1, columns.clone()),
            teacher.select(1, columns),
            spec["temperature"].as_f64().unwrap(),
        );
        let value = f64::from(values(loss.clone().reshape([1, 1]))[0]);
        let expected = spec["loss"].as_f64().unwrap();
        assert!(
            (value - expected).abs() < 1e-5 * expected,
            "{case}: loss {value} vs torch {expected}"
        );
        let grads = loss.backward();
        let gradient = values(student.grad(&grads).unwrap());
        let HostData::Float(torch) = &map.tensors[&format!("{key}.grad")].data else {
            unreachable!()
        };
        assert_close(&gradient, torch, 1e-5, &format!("{case} gradient"));
    }
}

#[test]
fn the_nuclear_norm_of_normalised_features_and_its_gradient_match_torch() {
    let (map, cases) = fixtures();
    let device = Device::flex().autodiff();
    for case in ["wide", "tall"] {
        let key = format!("rank.{case}");
        let features = tensor(&map, &format!("{key}.features"), &device).require_grad();
        let norm = normalized_nuclear_norm(features.clone());
        let value = f64::from(values(norm.clone().reshape([1, 1]))[0]);
        let expected = cases[&key]["nuclear_norm"].as_f64().unwrap();
        assert!(
            (value - expected).abs() < 1e-5 * expected,
            "{case}: ‖F̂‖_* {value} vs torch {expected}"
        );
        // The regulariser's term is −λ_r · ‖F̂‖_* / B of that norm.
        let regulariser = RankRegularizationSettings {
            weight: 0.5,
            ..RankRegularizationSettings::default()
        };
        let rows = features.dims()[0] as f64;
        let term = f64::from(values(regulariser.loss(features.clone()).reshape([1, 1]))[0]);
        assert!(
            (term + 0.5 * expected / rows).abs() < 1e-5 * expected,
            "{case}: term {term}"
        );
        let grads = norm.backward();
        let gradient = values(features.grad(&grads).unwrap());
        let HostData::Float(torch) = &map.tensors[&format!("{key}.grad")].data else {
            unreachable!()
        };
        assert_close(&gradient, torch, 1e-4, &format!("{case} gradient"));
    }
}
