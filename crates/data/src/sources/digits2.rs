//! `digits2`: the embedded Digits-2 data (datasets/digits2/SOURCES.md), two real handwritten-digit
//! domains decoded in memory from the two shipped files.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use flate2::read::GzDecoder;
use image::{GrayImage, RgbImage};

use crate::DataError;
use crate::dataset::{ImageOrigin, ImageSet, Sample};
use crate::decode::decode_bytes;

/// `datasets/digits2/digits.png`: 5,000 MNIST digits, 20×20, tiled 100 across and 50 down.
pub const MNIST_PNG: &[u8] = include_bytes!("../../../../datasets/digits2/digits.png");
/// `datasets/digits2/digits.csv.gz`: 1,797 UCI optdigits, 8×8 with values 0–16, then the label.
pub const OPTDIGITS_CSV_GZ: &[u8] = include_bytes!("../../../../datasets/digits2/digits.csv.gz");

/// The two domains.
pub const DIGITS2_DOMAINS: [&str; 2] = ["mnist", "optdigits"];
/// The class names, digits 0 to 9.
pub const DIGIT_NAMES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

const MNIST_TILE: u32 = 20;
const MNIST_COLUMNS: u32 = 100;
const MNIST_ROWS: u32 = 50;
const MNIST_ROWS_PER_DIGIT: u32 = 5;
const OPTDIGITS_SIDE: u32 = 8;
const OPTDIGITS_MAX: u32 = 16;

type Decoded = (Arc<Vec<RgbImage>>, Vec<usize>);

/// All images and labels of `domain`, decoded once per process.
pub fn digits2_domain(domain: &str) -> Result<Decoded, DataError> {
    static MNIST: OnceLock<Result<Decoded, String>> = OnceLock::new();
    static OPTDIGITS: OnceLock<Result<Decoded, String>> = OnceLock::new();
    let (cell, decode): (_, fn() -> Result<Decoded, DataError>) = match domain {
        "mnist" => (&MNIST, decode_mnist),
        "optdigits" => (&OPTDIGITS, decode_optdigits),
        other => {
            return Err(DataError::config(
                "domain",
                format!(
                    "unknown Digits-2 domain {other:?}; the domains are {}",
                    DIGITS2_DOMAINS.join(", ")
                ),
            ));
        }
    };
    cell.get_or_init(|| decode().map_err(|error| error.to_string()))
        .clone()
        .map_err(|message| DataError::image(format!("datasets/digits2 ({domain})"), message))
}

/// All samples of `domain` as one set, in file order.
pub fn digits2_set(domain: &str) -> Result<ImageSet, DataError> {
    let (images, labels) = digits2_domain(domain)?;
    Ok(ImageSet {
        name: format!("digits2/{domain}"),
        samples: labels
            .iter()
            .enumerate()
            .map(|(index, label)| Sample {
                origin: ImageOrigin::Memory(index),
                label: *label,
                listed_at: None,
            })
            .collect(),
        memory: Some(images),
        num_classes: DIGIT_NAMES.len(),
    })
}

fn decode_mnist() -> Result<Decoded, DataError> {
    let origin = Path::new("datasets/digits2/digits.png");
    let sheet = decode_bytes(MNIST_PNG, origin)?;
    if sheet.dimensions() != (MNIST_COLUMNS * MNIST_TILE, MNIST_ROWS * MNIST_TILE) {
        return Err(DataError::image(
            origin,
            format!("expected 2000×1000 pixels, found {:?}", sheet.dimensions()),
        ));
    }
    let mut images = Vec::with_capacity((MNIST_COLUMNS * MNIST_ROWS) as usize);
    let mut labels = Vec::with_capacity(images.capacity());
    for row in 0..MNIST_ROWS {
        for column in 0..MNIST_COLUMNS {
            let tile = image::imageops::crop_imm(
                &sheet,
                column * MNIST_TILE,
                row * MNIST_TILE,
                MNIST_TILE,
                MNIST_TILE,
            );
            images.push(tile.to_image());
            labels.push((row / MNIST_ROWS_PER_DIGIT) as usize);
        }
    }
    Ok((Arc::new(images), labels))
}

fn decode_optdigits() -> Result<Decoded, DataError> {
    let origin = Path::new("datasets/digits2/digits.csv.gz");
    let mut text = String::new();
    GzDecoder::new(OPTDIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|error| DataError::image(origin, format!("cannot decompress: {error}")))?;
    let pixels = (OPTDIGITS_SIDE * OPTDIGITS_SIDE) as usize;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let bad = |message: String| DataError::ListLine {
            path: origin.to_path_buf(),
            line: index + 1,
            message,
        };
        let values: Vec<u32> = line
            .split(',')
            .map(|field| field.trim().parse::<f64>().map(|value| value as u32))
            .collect::<Result<_, _>>()
            .map_err(|error| bad(format!("not a number: {error}")))?;
        if values.len() != pixels + 1
            || values[..pixels].iter().any(|v| *v > OPTDIGITS_MAX)
            || values[pixels] > 9
        {
            return Err(bad(format!(
                "expected 64 values in 0..=16 and a label in 0..=9, found {} fields",
                values.len()
            )));
        }
        // 0..16 ink levels → 0..255, rounded, white ink on black as MNIST.
        let grey = GrayImage::from_fn(OPTDIGITS_SIDE, OPTDIGITS_SIDE, |x, y| {
            let value = values[(y * OPTDIGITS_SIDE + x) as usize];
            image::Luma([((value * 255 + OPTDIGITS_MAX / 2) / OPTDIGITS_MAX) as u8])
        });
        images.push(image::DynamicImage::ImageLuma8(grey).into_rgb8());
        labels.push(values[pixels] as usize);
    }
    Ok((Arc::new(images), labels))
}
