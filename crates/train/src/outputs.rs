//! What a run saves for eval: each evaluated model's logits, penultimate features and labels, per split
//! (`outputs/<split>/<epoch>.safetensors`, epoch −1 being the pre-trained model), and the PCV folds'.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ftcal_data::{BatchPlan, ImageSet, Loader, LoaderSettings, Pipeline};
use ftcal_eval::{Matrix, Scores};
use ftcal_models::Model;

use crate::TrainError;
use crate::progress::{Event, RunLog};

/// The epoch number of the pre-trained model.
pub const PRETRAINED_EPOCH: i64 = -1;

/// `outputs/<split>/<epoch>.safetensors` of a run directory.
pub fn output_path(run_dir: &Path, split: &str, epoch: i64) -> PathBuf {
    run_dir
        .join("outputs")
        .join(split)
        .join(format!("{epoch}.safetensors"))
}

/// `outputs/pcv/<fold>/`: a PCV fold's outputs and its split of S.
pub fn pcv_dir(run_dir: &Path, fold: usize) -> PathBuf {
    run_dir.join("outputs").join("pcv").join(fold.to_string())
}

/// The epochs with saved outputs of `split`, in increasing order.
pub fn saved_epochs(run_dir: &Path, split: &str) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("outputs").join(split)) else {
        return Vec::new();
    };
    let mut epochs: Vec<i64> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".safetensors")?.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

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
        for batch in loader.epoch(0) {
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
