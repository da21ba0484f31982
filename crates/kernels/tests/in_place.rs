//! `update_in_place`: the update reaches every element once, in the parameter's and the buffers' own
//! storage when nothing else holds it, never in a storage another tensor shares; tensors it does not
//! cover come back untouched.

use burn::backend::Flex;
use burn::tensor::{DType, Device, Tensor, TensorData};
use ftcal_kernels::in_place::BLOCK;
use ftcal_kernels::{FlatUpdate, update_in_place};

fn values(tensor: &Tensor<1>) -> Vec<f32> {
    tensor.to_data().try_to_vec::<f32>().unwrap()
}

/// Where the tensor's storage starts.
fn address(tensor: &Tensor<1>) -> usize {
    let primitive = tensor.clone().try_into_primitive::<Flex>().unwrap();
    primitive.bytes().as_ptr() as usize
}

fn ramp(length: usize, scale: f32) -> Tensor<1> {
    let values: Vec<f32> = (0..length).map(|index| index as f32 * scale).collect();
    Tensor::from_data(TensorData::new(values, [length]), &Device::flex())
}

/// param += grad; buffer 0 += 1; buffer 1 = param's old value.
fn add_and_count(param: &mut [f32], grad: &[f32], buffers: &mut [&mut [f32]]) {
    for count in buffers[0].iter_mut() {
        *count += 1.0;
    }
    buffers[1].copy_from_slice(param);
    for (value, grad) in param.iter_mut().zip(grad) {
        *value += grad;
    }
}

#[test]
fn every_element_is_updated_once_in_its_own_storage() {
    // Short (one call on this thread), and several blocks with a ragged end (blocks on rayon's threads).
    for length in [37, 7 * BLOCK + 5] {
        let param = ramp(length, 1.0);
        let grad = ramp(length, 0.5);
        let param_address = address(&param);
        let update = FlatUpdate {
            param,
            grad: grad.clone(),
            buffers: Vec::new(),
        };
        let (param, buffers) = update_in_place(update, 2, add_and_count).unwrap();
        assert_eq!(
            address(&param),
            param_address,
            "length {length}: the parameter moved"
        );
        let expected: Vec<f32> = (0..length).map(|index| index as f32 * 1.5).collect();
        assert_eq!(values(&param), expected, "length {length}");
        assert_eq!(
            values(&buffers[0]),
            vec![1.0; length],
            "length {length}: new buffers start at 0"
        );

        let buffer_addresses: Vec<usize> = buffers.iter().map(address).collect();
        let update = FlatUpdate { param, grad, buffers };
        let (param, buffers) = update_in_place(update, 2, add_and_count).unwrap();
        let expected_param: Vec<f32> = (0..length).map(|index| index as f32 * 2.0).collect();
        assert_eq!(values(&param), expected_param, "length {length}");
        assert_eq!(values(&buffers[0]), vec![2.0; length], "length {length}");
        assert_eq!(values(&buffers[1]), expected, "length {length}");
        let moved: Vec<usize> = buffers.iter().map(address).collect();
        assert_eq!(moved, buffer_addresses, "length {length}: the buffers moved");
    }
}

#[test]
fn a_storage_another_tensor_holds_is_copied_not_written() {
    let param = ramp(3 * BLOCK, 1.0);
    let held = param.clone();
    let update = FlatUpdate {
        param,
        grad: ramp(3 * BLOCK, 1.0),
        buffers: Vec::new(),
    };
    let (param, _) = update_in_place(update, 2, add_and_count).unwrap();
    assert_eq!(
        values(&held),
        values(&ramp(3 * BLOCK, 1.0)),
        "the held tensor changed"
    );
    assert_eq!(values(&param), values(&ramp(3 * BLOCK, 2.0)));
}

#[test]
fn tensors_it_does_not_cover_come_back_untouched() {
    let cases = [
        (
            "float64",
            ramp(8, 1.0).cast(DType::F64),
            ramp(8, 1.0).cast(DType::F64),
        ),
        ("autodiff", ramp(8, 1.0).autodiff(), ramp(8, 1.0)),
        ("lengths differ", ramp(8, 1.0), ramp(9, 1.0)),
    ];
    for (what, param, grad) in cases {
        let update = FlatUpdate {
            param: param.clone(),
            grad,
            buffers: Vec::new(),
        };
        let refused = update_in_place(update, 2, add_and_count).expect_err(what);
        assert_eq!(refused.param.to_data(), param.to_data(), "{what}");
        assert!(refused.buffers.is_empty(), "{what}");
    }
}
