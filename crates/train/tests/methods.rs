//! The fine-tuning methods train what they say and nothing else: one epoch of `train_stage` on Digits-2
//! with a tiny ResNet, comparing every tensor before and after. Holistic Transfer's parts, switched off
//! or made trivial, give the plain stage bit for bit.

use burn::tensor::{Device, Tensor, TensorData};
use ftcal_data::sources::digits2::digits2_set;
use ftcal_data::{LoaderSettings, Pipeline, TransformSpec};
use ftcal_models::{Model, ModelConfig, ParamGroup, TensorMap};
use ftcal_train::checkpoint::Checkpoint;
use ftcal_train::config::{Method, ScheduleSettings, TrainingSettings};
use ftcal_train::holistic::distillation::DistillationSettings;
use ftcal_train::holistic::ensemble::EnsembleSettings;
use ftcal_train::holistic::lolsgd::LolsgdSettings;
use ftcal_train::holistic::rank::RankRegularizationSettings;
use ftcal_train::optim::OptimizerSettings;
use ftcal_train::progress::RunLog;
use ftcal_train::trainer::{StageEnd, StageJob, train_stage};

fn tiny_config() -> ModelConfig {
    toml::from_str(
        "family = \"resnet\"\nblock = \"basic\"\nlayers = [1, 1, 1, 1]\nchannels = [4, 8, 8, 8]\n\
         stem_width = 4\nstem = \"small\"\nclasses = 10\nimage_size = 32\n",
    )
    .unwrap()
}

fn settings(method: Method, freeze_batch_norm: bool) -> TrainingSettings {
    TrainingSettings {
        method,
        epochs: 1,
        iterations_per_epoch: Some(3),
        batch_size: 16,
        lr: 0.1,
        backbone_lr_multiplier: Some(1.0),
        optimizer: OptimizerSettings::sgd(0.9, true, 0.0),
        schedule: ScheduleSettings::default(),
        freeze_batch_norm,
        grad_clip_norm: Some(5.0),
        lolsgd: None,
        distillation: None,
        rank_regularization: None,
        ensemble: None,
    }
}

/// Two images of varied pixels; not drawn from the device's generator, which the tests' threads share.
fn some_images(device: &Device) -> Tensor<4> {
    let count = 2 * 3 * 32 * 32;
    let pixels: Vec<f32> = (0..count).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    Tensor::from_data(TensorData::new(pixels, [2, 3, 32, 32]), device)
}

/// Every tensor of the model after one epoch of `method`, with the tensors before.
fn train_one_epoch(method: Method, freeze_batch_norm: bool) -> (TensorMap, TensorMap, Model) {
    train_with(settings(method, freeze_batch_norm))
}

/// Every tensor of the model after the stage `settings` describe, with the tensors before.
fn train_with(settings: TrainingSettings) -> (TensorMap, TensorMap, Model) {
    let device = Device::flex().autodiff();
    let config = tiny_config();
    // The device's generator is shared by the tests' threads: seeding and drawing hold a lock, so that
    // every test starts from the same initialisation.
    static INITIALISATION: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // burn initialises parameters lazily, on first use: `to_timm` draws them inside the lock.
    let (model, before, source_model) = {
        let _drawing = INITIALISATION.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(0);
        let model = config.init(&device);
        let before = model.to_timm();
        // The source model a distilling stage keeps: the same initialisation, built on its own (clones
        // of a model share BatchNorm's statistics).
        device.seed(0);
        let source_model = config.init(&device);
        source_model.to_timm();
        (model, before, source_model)
    };
    let temp = tempfile::tempdir().unwrap();
    let settings = settings.resolve(ftcal_train::Stage::FineTuning).unwrap();
    let pipeline = Pipeline::from_spec(&TransformSpec::Preset("digits_train".into()), "t").unwrap();
    let loader = LoaderSettings {
        workers: Some(0),
        ..LoaderSettings::default()
    };
    let set = digits2_set("optdigits")
        .unwrap()
        .restricted_to(&[0, 1, 2, 3, 4], "S");
    let job = StageJob {
        name: "fine_tuning".into(),
        settings: &settings,
        train_set: set,
        pipeline: &pipeline,
        loader: &loader,
        seed: 0,
        checkpoint: Checkpoint::new(temp.path().join("checkpoint")),
        model_config: &config,
        stop_after_epoch: None,
        fine_tuning_classes: vec![0, 1, 2, 3, 4],
        absent_classes: vec![5, 6, 7, 8, 9],
        source_model: Some(source_model),
    };
    let mut silent = ftcal_train::Silent;
    let mut log = RunLog::open(&temp.path().join("log.txt"), &mut silent).unwrap();
    let StageEnd::Finished(model) =
        train_stage(job, model, &device, &mut log, &mut |_, _, _| Ok(())).unwrap()
    else {
        panic!("the stage finishes")
    };
    (before, model.to_timm(), *model)
}

fn changed(before: &TensorMap, after: &TensorMap, key: &str) -> bool {
    before.tensors[key] != after.tensors[key]
}

/// The keys of `map` that `keep` selects; never none, so that a loop over them always asserts something.
fn keys(map: &TensorMap, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let keys: Vec<String> = map.tensors.keys().filter(|k| keep(k)).cloned().collect();
    assert!(!keys.is_empty(), "no key selected among {:?}", map.tensors.keys());
    keys
}

const RUNNING: [&str; 2] = ["running_mean", "running_var"];

fn is_running(key: &str) -> bool {
    RUNNING.iter().any(|r| key.ends_with(r))
}

fn is_trainable_backbone(key: &str) -> bool {
    !key.starts_with("fc.") && !is_running(key) && !key.ends_with("num_batches_tracked")
}

#[test]
fn full_fine_tuning_moves_every_parameter_and_the_running_statistics() {
    let (before, after, _) = train_one_epoch(Method::Full, false);
    for key in keys(&before, |k| !k.ends_with("num_batches_tracked")) {
        assert!(changed(&before, &after, &key), "{key} should change");
    }
}

#[test]
fn the_frozen_classifier_keeps_the_head() {
    let (before, after, model) = train_one_epoch(Method::FrozenClassifier, false);
    assert!(!changed(&before, &after, "fc.weight") && !changed(&before, &after, "fc.bias"));
    for key in keys(&before, is_trainable_backbone) {
        assert!(changed(&before, &after, &key), "{key} should change");
    }
    // The model the stage hands on (to the evaluation, to a resumed epoch) still has its head frozen.
    let images = some_images(&model.head().weight.device());
    let grads = model.forward(images).sum().backward();
    assert!(
        model.head().weight.grad(&grads).is_none(),
        "the head gets no gradient"
    );
    let backbone = model.param_ids(ParamGroup::Backbone);
    let ftcal_models::Model::Resnet(resnet) = &model else {
        unreachable!("the tiny model is a ResNet")
    };
    assert!(backbone.contains(&resnet.conv1.weight.id));
    assert!(resnet.conv1.weight.grad(&grads).is_some(), "the backbone does");
}

#[test]
fn the_linear_probe_keeps_the_backbone_and_its_statistics() {
    let (before, after, _) = train_one_epoch(Method::LinearProbe, false);
    assert!(changed(&before, &after, "fc.weight") && changed(&before, &after, "fc.bias"));
    for key in keys(&before, |k| !k.starts_with("fc.")) {
        assert!(!changed(&before, &after, &key), "{key} should stay");
    }
}

#[test]
fn frozen_batch_norm_keeps_the_running_statistics_only() {
    let (before, after, _) = train_one_epoch(Method::Full, true);
    for key in keys(&before, is_running) {
        assert!(!changed(&before, &after, &key), "{key} should stay");
    }
    for key in keys(&before, is_trainable_backbone) {
        assert!(changed(&before, &after, &key), "{key} should change");
    }
}

/// Every tensor of two trained models is the same, bit for bit.
fn assert_same_tensors(expected: &TensorMap, actual: &TensorMap, what: &str) {
    assert_eq!(
        expected.tensors.keys().collect::<Vec<_>>(),
        actual.tensors.keys().collect::<Vec<_>>()
    );
    let differing: Vec<&String> = (expected.tensors.iter())
        .filter(|(key, tensor)| actual.tensors[*key] != **tensor)
        .map(|(key, _)| key)
        .collect();
    assert!(differing.is_empty(), "{what}: tensors differ: {differing:?}");
}

/// LOLSGD of `copies` copies of 2 steps over an epoch of 3 iterations (a round of 2 steps per copy, then
/// one sharing the last step), leaving nothing out.
fn lolsgd(copies: usize) -> LolsgdSettings {
    LolsgdSettings {
        copies,
        local_steps: 2,
        leave_out: 0.0,
        ..LolsgdSettings::default()
    }
}

#[test]
fn every_holistic_transfer_part_switched_off_is_the_plain_stage() {
    let (_, plain, _) = train_one_epoch(Method::Full, false);
    let off = TrainingSettings {
        lolsgd: Some(LolsgdSettings {
            enabled: false,
            ..LolsgdSettings::default()
        }),
        distillation: Some(DistillationSettings {
            enabled: false,
            ..DistillationSettings::default()
        }),
        rank_regularization: Some(RankRegularizationSettings {
            enabled: false,
            ..RankRegularizationSettings::default()
        }),
        ensemble: Some(EnsembleSettings {
            enabled: false,
            ..EnsembleSettings::default()
        }),
        ..settings(Method::Full, false)
    };
    assert!(off.holistic_transfer_parts().is_empty());
    let (_, switched_off, _) = train_with(off);
    assert_same_tensors(&plain, &switched_off, "every part off");
    // Each part on changes the stage (so the comparison above could fail).
    let on = [
        (
            "lolsgd",
            TrainingSettings {
                lolsgd: Some(LolsgdSettings {
                    local_steps: 1,
                    ..LolsgdSettings::default()
                }),
                ..settings(Method::Full, false)
            },
        ),
        (
            "distillation",
            TrainingSettings {
                distillation: Some(DistillationSettings::default()),
                ..settings(Method::Full, false)
            },
        ),
        (
            "rank",
            TrainingSettings {
                rank_regularization: Some(RankRegularizationSettings::default()),
                ..settings(Method::Full, false)
            },
        ),
    ];
    for (part, settings) in on {
        let (_, trained, _) = train_with(settings);
        assert!(
            trained.tensors["conv1.weight"] != plain.tensors["conv1.weight"],
            "{part} changes the stage"
        );
    }
}

#[test]
fn lolsgd_with_one_copy_and_nothing_left_out_is_plain_sgd() {
    let (_, plain, _) = train_one_epoch(Method::Full, false);
    let one_copy = TrainingSettings {
        lolsgd: Some(lolsgd(1)),
        ..settings(Method::Full, false)
    };
    let (_, local, _) = train_with(one_copy);
    assert_same_tensors(&plain, &local, "LOLSGD, M = 1, ρ = 0");
    // Two copies average two trajectories from the same start: not plain SGD any more.
    let two_copies = TrainingSettings {
        lolsgd: Some(lolsgd(2)),
        ..settings(Method::Full, false)
    };
    let (_, averaged, _) = train_with(two_copies);
    assert!(averaged.tensors["conv1.weight"] != plain.tensors["conv1.weight"]);
}

#[test]
fn holistic_transfer_keeps_the_head_through_lolsgd_rounds() {
    let ht = TrainingSettings {
        lolsgd: Some(LolsgdSettings {
            copies: 2,
            local_steps: 1,
            ..LolsgdSettings::default()
        }),
        ..settings(Method::HolisticTransfer, false)
    };
    let (before, after, model) = train_with(ht);
    assert!(!changed(&before, &after, "fc.weight") && !changed(&before, &after, "fc.bias"));
    for key in keys(&before, is_trainable_backbone) {
        assert!(changed(&before, &after, &key), "{key} should change");
    }
    // The averaged model the stage hands on still has its head frozen.
    let images = some_images(&model.head().weight.device());
    let grads = model.forward(images).sum().backward();
    assert!(model.head().weight.grad(&grads).is_none());
}
