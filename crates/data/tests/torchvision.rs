//! ftcal's transforms against torchvision's own outputs (tests/fixtures/transforms/, made by
//! scripts/make_transform_fixtures.py with torchvision 0.29 and Pillow 13).

use fast_image_resize::Resizer;
use ftcal_data::transforms::{
    ChwImage, IMAGENET_MEAN, IMAGENET_STD, Pipeline, Region, ResizeTarget, Size, Step, adjust_brightness,
    adjust_contrast, adjust_hue, adjust_saturation, center_crop, normalize, resize_output, resize_region,
    sample_rng, to_chw_unit, to_grayscale,
};
use image::RgbImage;
use safetensors::SafeTensors;

const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/transforms/torchvision.safetensors");

fn tensors() -> SafeTensors<'static> {
    SafeTensors::deserialize(FIXTURE).unwrap()
}

/// A uint8 HWC tensor as an image.
fn rgb(name: &str) -> RgbImage {
    let tensors = tensors();
    let view = tensors.tensor(name).unwrap();
    let shape = view.shape();
    assert_eq!(shape[2], 3, "{name}");
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, view.data().to_vec()).unwrap()
}

/// A float32 CHW tensor.
fn chw(name: &str) -> Vec<f32> {
    let tensors = tensors();
    let view = tensors.tensor(name).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn max_abs_u8(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn input_unit() -> Vec<f32> {
    let input = rgb("input");
    let mut out = vec![0.0; 3 * (input.width() * input.height()) as usize];
    to_chw_unit(&input, &mut out);
    out
}

/// Pillow's and fast_image_resize's bilinear convolutions round their fixed-point sums differently; no
/// channel value may differ by more than one level.
#[test]
fn resizes_match_pillow_to_one_level() {
    let input = rgb("input");
    let (width, height) = input.dimensions();
    let whole = Region {
        top: 0,
        left: 0,
        height,
        width,
    };
    let mut resizer = Resizer::new();
    let cases = [
        ("resize_16x20", whole, (16, 20)),
        ("upsize_40x48", whole, (40, 48)),
        (
            "resized_crop_3_5_15_20_to_12",
            Region {
                top: 3,
                left: 5,
                height: 15,
                width: 20,
            },
            (12, 12),
        ),
    ];
    for (name, region, (out_h, out_w)) in cases {
        let ours = resize_region(&input, region, out_h, out_w, &mut resizer).unwrap();
        let diff = max_abs_u8(&ours, &rgb(name));
        assert!(diff <= 1, "{name}: {diff} levels apart");
    }
    // Resize(12) on 24×32 keeps the aspect ratio with torchvision's truncation of the long side.
    let (out_h, out_w) = resize_output(ResizeTarget::ShorterSide(12), height, width);
    assert_eq!((out_h, out_w), (12, 16));
    let ours = resize_region(&input, whole, out_h, out_w, &mut resizer).unwrap();
    assert!(max_abs_u8(&ours, &rgb("resize_short_12")) <= 1);
}

#[test]
fn crops_and_flips_match_exactly() {
    let input = rgb("input");
    assert!(center_crop(&input, 18, 18) == rgb("center_crop_18"));
    assert!(
        center_crop(&input, 27, 37) == rgb("center_crop_27x37"),
        "padding larger crops with black"
    );
    let flip = Pipeline::new(
        vec![
            Step::CenterCrop {
                size: Size::HeightWidth([24, 32]),
            },
            Step::HorizontalFlip { p: 1.0 },
        ],
        "test",
    )
    .unwrap();
    let mut out = vec![0.0; 3 * 24 * 32];
    flip.apply(&input, &mut sample_rng(0, 0, 0), &mut Resizer::new(), &mut out)
        .unwrap();
    let mut expected = vec![0.0; out.len()];
    to_chw_unit(&rgb("hflip"), &mut expected);
    assert!(out == expected, "horizontal flip");
}

/// The colour operations follow torchvision's tensor formulas; hue goes through HSV and back, where
/// torchvision's v1 and v2 functions already differ by 8e-7.
#[test]
fn colour_operations_match_the_tensor_path() {
    type Op = fn(&mut ChwImage<'_>);
    let cases: [(&str, Op, f32); 7] = [
        ("brightness_1p3", |image| adjust_brightness(image, 1.3), 1e-6),
        ("contrast_0p7", |image| adjust_contrast(image, 0.7), 1e-6),
        ("saturation_1p4", |image| adjust_saturation(image, 1.4), 1e-6),
        ("hue_0p2", |image| adjust_hue(image, 0.2), 1e-5),
        ("hue_m0p3", |image| adjust_hue(image, -0.3), 1e-5),
        ("grayscale", to_grayscale, 1e-6),
        (
            "normalize_imagenet",
            |image| normalize(image, IMAGENET_MEAN, IMAGENET_STD),
            1e-5,
        ),
    ];
    for (name, op, tolerance) in cases {
        let mut data = input_unit();
        op(&mut ChwImage {
            data: &mut data,
            height: 24,
            width: 32,
        });
        let diff = max_abs(&data, &chw(name));
        assert!(diff <= tolerance, "{name}: {diff}");
    }
}

/// The documented difference from a PIL pipeline: PIL blends in 8 bits. Brightness, contrast and
/// saturation stay within two levels of it; hue, which PIL quantises to 256 steps in 8-bit HSV, within ten.
#[test]
fn colour_operations_stay_near_the_pil_path() {
    type Op = fn(&mut ChwImage<'_>);
    let cases: [(&str, Op, f32); 5] = [
        ("pil_brightness_1p3", |image| adjust_brightness(image, 1.3), 2.0),
        ("pil_contrast_0p7", |image| adjust_contrast(image, 0.7), 2.0),
        ("pil_saturation_1p4", |image| adjust_saturation(image, 1.4), 2.0),
        ("pil_hue_0p2", |image| adjust_hue(image, 0.2), 10.0),
        ("pil_hue_m0p3", |image| adjust_hue(image, -0.3), 10.0),
    ];
    for (name, op, levels) in cases {
        let mut data = input_unit();
        op(&mut ChwImage {
            data: &mut data,
            height: 24,
            width: 32,
        });
        let mut pil = vec![0.0; data.len()];
        to_chw_unit(&rgb(name), &mut pil);
        let diff = max_abs(&data, &pil) * 255.0;
        assert!(diff <= levels, "{name}: {diff} levels from PIL");
    }
}
