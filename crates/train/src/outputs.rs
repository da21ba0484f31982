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

/// How a model is evaluated on an image set.
pub struct Evaluator<'a> {
    /// The evaluation pipeline (no augmentation).
    pub pipeline: &'a Pipeline,
    /// Worker threads and caching.
    pub loader: &'a LoaderSettings,
    /// Images per batch.
    pub batch_size: usize,
    /// Keep the penultimate features (for the NCM probe).
    pub features: bool,
    /// The plain (non-autodiff) device.
    pub device: &'a Device,
}

impl Evaluator<'_> {
    /// Runs `model` (in evaluation mode: BatchNorm uses its running statistics) over `set` in order and
    /// returns its logits, labels and, if asked, features. `what` names the work in progress reports.
    /// A stop request ends it between batches with [`TrainError::Interrupted`]; nothing is kept.
    pub fn predict(
        &self,
        model: &Model,
        set: &ImageSet,
        what: &str,
        log: &mut RunLog<'_>,
    ) -> Result<Scores, TrainError> {
        // A forward pass on the autodiff device would keep its graph; valid() moves to the plain one.
        let model = model.valid();
        let loader = Loader::new(
            set.clone(),
            self.pipeline.clone(),
            BatchPlan::evaluation(self.batch_size),
            0,
            self.loader,
        )?;
        log.event(&Event::Evaluating {
            what,
            images: set.len(),
        });
        let mut logits = Vec::new();
        let mut features = Vec::new();
        let mut labels = Vec::new();
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
            let (images, _) = batch.to_tensors(self.device);
            let batch_features = model.features(images);
            let batch_logits = model.logits(batch_features.clone());
            [_, classes] = batch_logits.dims();
            logits.extend(host(batch_logits));
            if self.features {
                [_, dim] = batch_features.dims();
                features.extend(host(batch_features));
            }
            labels.extend(batch.labels.iter().map(|&label| label as i64));
        }
        let rows = labels.len();
        let logits = Matrix::new(rows, classes, logits).expect("rows × classes values");
        let features = self
            .features
            .then(|| Matrix::new(rows, dim, features).expect("rows × dim values"));
        Ok(Scores::new(what, logits, &labels, features)?)
    }
}

fn host(tensor: Tensor<2>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}
