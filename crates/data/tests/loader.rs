//! The loader: batches independent of the thread count, the paper's cycling epochs, tensors, skipping.

use std::collections::HashSet;
use std::fs;

use ftcal_data::transforms::{Pipeline, TransformSpec, random_resized_crop_region, sample_rng};
use ftcal_data::{BatchPlan, ImageOrigin, ImageSet, Loader, LoaderSettings, OnCorrupt, Sample};
use image::RgbImage;

fn digits(domain: &str) -> ImageSet {
    ftcal_data::sources::digits2::digits2_set(domain).unwrap()
}

fn pipeline(name: &str) -> Pipeline {
    Pipeline::from_spec(&TransformSpec::Preset(name.into()), "test").unwrap()
}

fn settings(workers: usize) -> LoaderSettings {
    LoaderSettings {
        workers: Some(workers),
        ..LoaderSettings::default()
    }
}

fn training_plan(iterations_per_epoch: Option<usize>) -> BatchPlan {
    BatchPlan {
        batch_size: 64,
        shuffle: true,
        drop_last: true,
        iterations_per_epoch,
    }
}

#[test]
fn batches_do_not_depend_on_the_number_of_threads() {
    let set = digits("optdigits");
    let epoch = |workers: usize| -> Vec<ftcal_data::Batch> {
        let loader = Loader::new(
            set.clone(),
            pipeline("digits_train"),
            training_plan(Some(5)),
            7,
            &settings(workers),
        )
        .unwrap();
        loader.epoch(2).map(Result::unwrap).collect()
    };
    let inline = epoch(0);
    assert_eq!(inline.len(), 5);
    assert_eq!(inline, epoch(1));
    assert_eq!(inline, epoch(4));
    // A different seed gives different batches.
    let other = Loader::new(
        set,
        pipeline("digits_train"),
        training_plan(Some(5)),
        8,
        &settings(2),
    )
    .unwrap()
    .epoch(2)
    .next();
    assert_ne!(other.unwrap().unwrap().indices, inline[0].indices);
}

/// A run resumed in the middle of an epoch gets the batches the uninterrupted epoch had there.
#[test]
fn an_epoch_started_in_the_middle_yields_the_rest_of_the_same_batches() {
    let loader = Loader::new(
        digits("optdigits"),
        pipeline("digits_train"),
        training_plan(Some(7)),
        5,
        &settings(2),
    )
    .unwrap();
    // Epoch 3 of 7 iterations spans two passes over the data (19 batches a pass).
    let whole: Vec<ftcal_data::Batch> = loader.epoch(3).map(Result::unwrap).collect();
    for first in [1, 4, 6] {
        let rest: Vec<ftcal_data::Batch> = loader.epoch_from(3, first).map(Result::unwrap).collect();
        assert_eq!(rest.len(), 7 - first);
        assert!(rest == whole[first..], "from batch {first}");
    }
    assert_eq!(loader.epoch_from(3, 7).count(), 0);
    assert_eq!(loader.epoch_from(3, 99).count(), 0);
}

#[test]
fn fixed_iterations_cycle_through_shuffled_passes() {
    // 1,797 optdigits → 1,257 training samples → 19 full batches of 64 per pass.
    let set = digits("optdigits");
    let mut dataset = set.clone();
    dataset.samples.truncate(200);
    let loader = Loader::new(
        dataset,
        pipeline("digits_eval"),
        training_plan(Some(4)),
        0,
        &settings(2),
    )
    .unwrap();
    assert_eq!(loader.batches_per_pass(), 3);
    assert_eq!(loader.batches_per_epoch(), 4);
    // Epochs 0..3 are global batches 0..12: exactly four passes of three batches.
    let batches: Vec<Vec<usize>> = (0..3)
        .flat_map(|epoch| loader.epoch(epoch).map(|b| b.unwrap().indices))
        .collect();
    assert_eq!(batches.len(), 12);
    for pass in batches.chunks(3) {
        let seen: HashSet<usize> = pass.iter().flatten().copied().collect();
        assert_eq!(seen.len(), 192, "a pass draws each sample at most once");
    }
    assert_ne!(batches[0], batches[3], "each pass is shuffled anew");
    // The epoch is a function of its index alone: recomputing epoch 1 gives the same batches (resume).
    let again: Vec<Vec<usize>> = loader.epoch(1).map(|b| b.unwrap().indices).collect();
    assert_eq!(again, batches[4..8]);
}

#[test]
fn evaluation_plan_visits_every_sample_in_order() {
    let set = digits("mnist");
    let loader = Loader::new(
        set.clone(),
        pipeline("digits_eval"),
        BatchPlan::evaluation(300),
        0,
        &settings(2),
    )
    .unwrap();
    let indices: Vec<usize> = loader.epoch(0).flat_map(|b| b.unwrap().indices).collect();
    assert_eq!(indices, (0..set.len()).collect::<Vec<_>>());
    // Deterministic pipelines do not depend on the epoch.
    let first = loader.epoch(0).next().unwrap().unwrap();
    let later = loader.epoch(5).next().unwrap().unwrap();
    assert_eq!(first, later);
}

#[test]
fn batches_become_burn_tensors() {
    let set = digits("optdigits");
    let loader = Loader::new(
        set,
        pipeline("digits_train"),
        training_plan(None),
        0,
        &settings(1),
    )
    .unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let device = burn::tensor::Device::flex();
    let (images, labels) = batch.to_tensors(&device);
    assert_eq!(images.dims(), [64, 3, 32, 32]);
    assert_eq!(labels.dims(), [64]);
    let labels: Vec<i64> = labels.into_data().convert::<i64>().try_to_vec().unwrap();
    assert_eq!(labels, batch.labels.iter().map(|l| *l as i64).collect::<Vec<_>>());
    let values: Vec<f32> = images.into_data().try_to_vec().unwrap();
    assert_eq!(values, batch.images);
}

#[test]
fn shapes_and_value_ranges_of_the_presets() {
    let image = RgbImage::from_fn(61, 47, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 256) as u8])
    });
    let mut resizer = fast_image_resize::Resizer::new();
    for (preset, side, mean, std) in [
        ("paper_train", 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("paper_eval", 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("digits_train", 32, [0.5; 3], [0.5; 3]),
        ("digits_eval", 32, [0.5; 3], [0.5; 3]),
    ] {
        let pipeline = pipeline(preset);
        assert_eq!(pipeline.output_size(), (side, side));
        for sample in 0..8 {
            let mut out = vec![f32::NAN; 3 * (side * side) as usize];
            pipeline
                .apply(&image, &mut sample_rng(0, 0, sample), &mut resizer, &mut out)
                .unwrap();
            for (channel, plane) in out.chunks_exact((side * side) as usize).enumerate() {
                let low = (0.0 - mean[channel]) / std[channel] - 1e-5;
                let high = (1.0 - mean[channel]) / std[channel] + 1e-5;
                assert!(
                    plane.iter().all(|v| (low..=high).contains(v)),
                    "{preset}: channel {channel} out of range"
                );
            }
        }
    }
}

#[test]
fn random_resized_crop_respects_its_ranges() {
    let mut rng = sample_rng(1, 0, 0);
    for _ in 0..2_000 {
        let region = random_resized_crop_region(375, 500, [0.7, 1.0], [3.0 / 4.0, 4.0 / 3.0], &mut rng);
        assert!(region.top + region.height <= 375 && region.left + region.width <= 500);
        let area = (region.height * region.width) as f64 / (375.0 * 500.0);
        let ratio = region.width as f64 / region.height as f64;
        // The ten tries nearly always succeed at these ranges; rounding moves area and ratio by a pixel.
        assert!((0.69..=1.0).contains(&area), "area {area}");
        assert!((0.74..=1.34).contains(&ratio), "ratio {ratio}");
    }
    // A strip too thin for the ratio falls back to the central crop of the clamped ratio.
    let region = random_resized_crop_region(10, 400, [0.99, 1.0], [0.9, 1.1], &mut rng);
    assert_eq!((region.height, region.width), (10, 11));
    assert_eq!(region.left, (400 - 11) / 2);
}

#[test]
fn corrupt_images_stop_training_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    RgbImage::from_pixel(40, 40, image::Rgb([200, 10, 10]))
        .save(&good)
        .unwrap();
    let bad = dir.path().join("bad.jpg");
    fs::write(&bad, b"\xff\xd8\xff\xe0 truncated").unwrap();
    let samples = [&good, &bad, &good, &good]
        .iter()
        .map(|path| Sample {
            origin: ImageOrigin::File(path.to_path_buf()),
            label: 0,
            listed_at: None,
        })
        .collect();
    let set = ImageSet {
        name: "tiny".into(),
        samples,
        memory: None,
        num_classes: 1,
    };
    let plan = BatchPlan::evaluation(4);
    let strict = Loader::new(set.clone(), pipeline("digits_eval"), plan, 0, &settings(1)).unwrap();
    let error = strict.epoch(0).next().unwrap().unwrap_err().to_string();
    assert!(
        error.contains("bad.jpg") && error.contains("on_corrupt"),
        "{error}"
    );

    let lenient = LoaderSettings {
        on_corrupt: OnCorrupt::Skip,
        cache: true,
        ..settings(1)
    };
    let loader = Loader::new(set, pipeline("digits_eval"), plan, 0, &lenient).unwrap();
    for _ in 0..2 {
        let batch = loader.epoch(0).next().unwrap().unwrap();
        assert_eq!(batch.indices, vec![0, 2, 3]);
        assert_eq!(batch.shape(), [3, 3, 32, 32]);
        assert_eq!(batch.skipped.len(), 1);
        assert!(batch.skipped[0].contains("bad.jpg"));
    }
}

#[test]
fn too_few_samples_for_one_batch_is_a_clear_error() {
    let mut set = digits("optdigits");
    set.samples.truncate(10);
    let error = Loader::new(
        set,
        pipeline("digits_train"),
        training_plan(None),
        0,
        &settings(1),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("10 samples") && error.contains("batch"), "{error}");
}

/// The cache keeps images decoded and through the deterministic resize: later epochs read no file, and
/// give the same batches as without the cache.
#[test]
fn the_cache_serves_later_epochs_without_reading_files() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<Sample> = (0..6u8)
        .map(|index| {
            let path = dir.path().join(format!("{index}.png"));
            RgbImage::from_fn(50, 40, |x, y| image::Rgb([index * 40, x as u8 * 5, y as u8 * 6]))
                .save(&path)
                .unwrap();
            Sample {
                origin: ImageOrigin::File(path),
                label: index as usize % 2,
                listed_at: None,
            }
        })
        .collect();
    let set = ImageSet {
        name: "cached".into(),
        samples,
        memory: None,
        num_classes: 2,
    };
    let cached = LoaderSettings {
        cache: true,
        ..settings(2)
    };
    for preset in ["digits_eval", "digits_train"] {
        let plan = BatchPlan {
            batch_size: 4,
            shuffle: true,
            drop_last: false,
            iterations_per_epoch: None,
        };
        let uncached_epochs: Vec<Vec<ftcal_data::Batch>> = (0..2)
            .map(|epoch| {
                Loader::new(set.clone(), pipeline(preset), plan, 3, &settings(1))
                    .unwrap()
                    .epoch(epoch)
                    .map(Result::unwrap)
                    .collect()
            })
            .collect();
        let loader = Loader::new(set.clone(), pipeline(preset), plan, 3, &cached).unwrap();
        let first: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
        assert_eq!(first, uncached_epochs[0], "{preset}");
        if preset == "digits_train" {
            for sample in &set.samples {
                if let ImageOrigin::File(path) = &sample.origin {
                    fs::remove_file(path).unwrap();
                }
            }
        }
        let second: Vec<_> = loader.epoch(1).map(Result::unwrap).collect();
        assert_eq!(second, uncached_epochs[1], "{preset}");
    }
}
