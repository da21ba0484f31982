//! What a run saves for eval: each evaluated model's logits, penultimate features and labels, per split
//! (where: [`crate::run_dir`]).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ftcal_data::{BatchPlan, ImageSet, Loader, LoaderSettings, Pipeline};
use ftcal_eval::{Matrix, Scores};
use ftcal_models::Model;

use crate::TrainError;
use crate::interrupt;
use crate::progress::{Event, RunLog};

/// The loader that evaluates `set`: every image once, in order, through the evaluation `pipeline`. Make it
/// once per image set and evaluate every epoch with it: with `data.loader.cache` on, it keeps each image
/// decoded and through the pipeline's geometric steps after the first pass.
pub fn evaluation_loader(
    set: &ImageSet,
    pipeline: &Pipeline,
    batch_size: usize,
    settings: &LoaderSettings,
) -> Result<Loader, TrainError> {
    Ok(Loader::new(
        set.clone(),
        pipeline.clone(),
        BatchPlan::evaluation(batch_size),
        0,
        settings,
    )?)
}

/// Runs `model` (in evaluation mode: BatchNorm uses its running statistics) over the images of `loader`
/// (an [`evaluation_loader`]) on the plain `device` and returns the logits, labels and, if `features`,
/// the penultimate features. `what` names the work in progress reports. A stop request ends it between
/// batches with [`TrainError::Interrupted`]; nothing is kept.
pub fn predict(
    model: &Model,
    loader: &Loader,
    features: bool,
    device: &Device,
    what: &str,
    log: &mut RunLog<'_>,
) -> Result<Scores, TrainError> {
    // A forward pass on the autodiff device would keep its graph; valid() moves to the plain one.
    let model = model.valid();
    log.event(&Event::Evaluating {
        what,
        images: loader.set().len(),
    });
    let started = std::time::Instant::now();
    let (mut logits, mut feature_values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut classes, mut dim) = (0, 0);
    let point = format!("evaluating {what}");
    for batch in loader.epoch(0) {
        interrupt::reached(&point);
        if interrupt::stop_requested() {
            let at = format!("while {point} (it is redone on resume)");
            log.message(&format!(
                "stopped at a safe point: {at}; the same command resumes"
            ));
            return Err(TrainError::Interrupted { at });
        }
        let batch = batch?;
        if batch.is_empty() {
            continue;
        }
        let (images, _) = batch.to_tensors(device);
        let batch_features = model.features(images);
        let batch_logits = model.logits(batch_features.clone());
        [_, classes] = batch_logits.dims();
        logits.extend(host(batch_logits));
        if features {
            [_, dim] = batch_features.dims();
            feature_values.extend(host(batch_features));
        }
        labels.extend(batch.labels.iter().map(|&label| label as i64));
    }
    let rows = labels.len();
    let seconds = started.elapsed().as_secs_f64();
    log.log_only(&format!(
        "evaluated {what}: {rows} images in {seconds:.2} s ({:.0} images/s)",
        rows as f64 / seconds.max(1e-9)
    ));
    let logits = Matrix::new(rows, classes, logits).expect("rows × classes values");
    let features = features.then(|| Matrix::new(rows, dim, feature_values).expect("rows × dim values"));
    Ok(Scores::new(what, logits, &labels, features)?)
}

fn host(tensor: Tensor<2>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}
