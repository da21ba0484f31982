//! Decode + `paper_train` to 224×224 of 256 JPEGs of 500×375: images/s on one core, and the loader's
//! images/s with 2 worker threads. The images are made here, in `target/ftcal-bench-images/`, where
//! `scripts/bench_torch_data.py` reads the same files for torchvision's figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fast_image_resize::Resizer;
use ftcal_data::transforms::{Pipeline, TransformSpec, sample_rng};
use ftcal_data::{BatchPlan, ImageOrigin, ImageSet, Loader, LoaderSettings, Sample};
use image::codecs::jpeg::JpegEncoder;
use image::{RgbImage, imageops};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const IMAGES: usize = 256;
const WIDTH: u32 = 500;
const HEIGHT: u32 = 375;

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ftcal-bench-images")
}

/// Photo-like JPEGs: a few random colours blended smoothly over the frame, plus sensor-like noise,
/// at quality 90 (about 35 KB each, the size of an Office-Home photo of this resolution).
fn make_images(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("bench folder");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    (0..IMAGES)
        .map(|index| {
            let path = dir.join(format!("{index:04}.jpg"));
            if !path.exists() {
                let small = RgbImage::from_fn(8, 6, |_, _| image::Rgb(rng.random::<[u8; 3]>()));
                let mut image = imageops::resize(&small, WIDTH, HEIGHT, imageops::FilterType::CatmullRom);
                for value in image.iter_mut() {
                    *value = value.saturating_add_signed(rng.random_range(-8i8..=8));
                }
                let file = std::fs::File::create(&path).expect("bench image");
                JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
                    .encode_image(&image)
                    .expect("JPEG encoding");
            }
            path
        })
        .collect()
}

fn image_set(files: &[PathBuf]) -> ImageSet {
    ImageSet {
        name: "bench".into(),
        samples: files
            .iter()
            .map(|path| Sample {
                origin: ImageOrigin::File(path.clone()),
                label: 0,
                listed_at: None,
            })
            .collect(),
        memory: None,
        num_classes: 1,
    }
}

fn bench(c: &mut Criterion) {
    let files = make_images(&bench_dir());
    let set = image_set(&files);
    let pipeline = Pipeline::from_spec(&TransformSpec::Preset("paper_train".into()), "bench").unwrap();
    let mut group = c.benchmark_group("paper_train_224");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));

    group.bench_function("one_core_decode_and_transform", |b| {
        let mut resizer = Resizer::new();
        let mut out = vec![0.0f32; 3 * 224 * 224];
        b.iter(|| {
            for index in 0..set.len() {
                let image = set.load(index).unwrap();
                pipeline
                    .apply(
                        &image,
                        &mut sample_rng(0, 0, index as u64),
                        &mut resizer,
                        &mut out,
                    )
                    .unwrap();
            }
        });
    });

    let plan = BatchPlan {
        batch_size: 32,
        shuffle: true,
        drop_last: false,
        iterations_per_epoch: None,
    };
    for workers in [1, 2] {
        let settings = LoaderSettings {
            workers: Some(workers),
            ..LoaderSettings::default()
        };
        let loader = Loader::new(set.clone(), pipeline.clone(), plan, 0, &settings).unwrap();
        group.bench_function(format!("loader_{workers}_threads_batch_32"), |b| {
            let mut epoch = 0;
            b.iter(|| {
                let images: usize = loader.epoch(epoch).map(|batch| batch.unwrap().len()).sum();
                assert_eq!(images, IMAGES);
                epoch += 1;
            });
        });
    }
    group.finish();

    // Evaluation passes, as a run makes one per evaluated epoch: a new loader each pass (what a run did
    // before it kept one per image set: its cache was thrown away each time), against one loader with its
    // cache on, whose later passes skip the decoding and the resize.
    let eval = Pipeline::from_spec(&TransformSpec::Preset("paper_eval".into()), "bench").unwrap();
    let mut group = c.benchmark_group("paper_eval_224");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    let settings = LoaderSettings {
        workers: Some(2),
        cache: true,
        ..LoaderSettings::default()
    };
    let pass = |loader: &Loader| {
        let images: usize = loader.epoch(0).map(|batch| batch.unwrap().len()).sum();
        assert_eq!(images, IMAGES);
    };
    group.bench_function("a_new_loader_each_pass", |b| {
        b.iter(|| {
            let loader =
                Loader::new(set.clone(), eval.clone(), BatchPlan::evaluation(64), 0, &settings).unwrap();
            pass(&loader);
        });
    });
    let cached = Loader::new(set.clone(), eval.clone(), BatchPlan::evaluation(64), 0, &settings).unwrap();
    pass(&cached);
    group.bench_function("one_cached_loader_later_passes", |b| b.iter(|| pass(&cached)));
    group.finish();
}

/// Why the resize goes through fast_image_resize: the same antialiased bilinear 500×375 → 224×224 with
/// the `image` crate's own resizer, which is Pillow-like too but scalar.
fn resize_backends(c: &mut Criterion) {
    let files = make_images(&bench_dir());
    let image = image_set(&files[..1]).load(0).unwrap();
    let mut group = c.benchmark_group("resize_500x375_to_224");
    group.bench_function("fast_image_resize", |b| {
        let mut resizer = Resizer::new();
        let region = ftcal_data::transforms::Region {
            top: 0,
            left: 0,
            height: HEIGHT,
            width: WIDTH,
        };
        b.iter(|| ftcal_data::transforms::resize_region(&image, region, 224, 224, &mut resizer).unwrap());
    });
    group.bench_function("image_imageops", |b| {
        b.iter(|| imageops::resize(image.as_ref(), 224, 224, imageops::FilterType::Triangle));
    });
    group.finish();
}

criterion_group!(benches, bench, resize_backends);
criterion_main!(benches);
