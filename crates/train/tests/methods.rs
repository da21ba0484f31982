//! The fine-tuning methods train what they say and nothing else: one epoch of `train_stage` on Digits-2
//! with a tiny ResNet, comparing every tensor before and after.

use burn::tensor::{Device, Distribution, Tensor};
use ftcal_data::sources::digits2::digits2_set;
use ftcal_data::{LoaderSettings, Pipeline, TransformSpec};
use ftcal_models::{Model, ModelConfig, ParamGroup, TensorMap};
use ftcal_train::checkpoint::Checkpoint;
use ftcal_train::config::{Method, ScheduleSettings, TrainingSettings};
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
    }
}

/// Every tensor of the model after one epoch of `method`, with the tensors before.
fn train_one_epoch(method: Method, freeze_batch_norm: bool) -> (TensorMap, TensorMap, Model) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let config = tiny_config();
    let model = config.init(&device);
    let before = model.to_timm();
    let temp = tempfile::tempdir().unwrap();
    let settings = settings(method, freeze_batch_norm)
        .resolve(ftcal_train::Stage::FineTuning)
        .unwrap();
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
    let images = Tensor::<4>::random(
        [2, 3, 32, 32],
        Distribution::Normal(0.0, 1.0),
        &model.head().weight.device(),
    );
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
