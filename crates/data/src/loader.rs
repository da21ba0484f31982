//! The batch loader: decode and transform on worker threads, a bounded queue per worker, batches in a
//! fixed order whatever the number of threads.
//!
//! A batch is a pure function of (seed, epoch, batch index): the sample order of each pass over the data
//! comes from a generator seeded with (seed, pass), and each sample's augmentation from
//! [`sample_rng`]`(seed, pass, sample)`. Worker `w` of `W` builds batches `w, w + W, …`, and the consumer
//! reads them round-robin, so 1 and 4 threads give identical batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use burn::tensor::{Device, Int, Tensor, TensorData};
use fast_image_resize::Resizer;
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::dataset::ImageSet;
use crate::transforms::{Pipeline, sample_rng};

/// What to do with an image that cannot be read or decoded during training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// Stop with an error naming the file (the default).
    #[default]
    Error,
    /// Leave the sample out of its batch and count it (the batch is one shorter).
    Skip,
}

/// `[data.loader]`: how batches are produced (not which: that is the [`BatchPlan`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderSettings {
    /// Worker threads decoding and transforming; 0 builds batches on the calling thread. Default: the
    /// number of cores.
    pub workers: Option<usize>,
    /// Batches each worker may have ready ahead of the consumer.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Keep every image in memory after its first use (for datasets that fit), decoded and put through
    /// the pipeline's leading deterministic steps (the evaluation resize), so later epochs skip both.
    #[serde(default)]
    pub cache: bool,
    /// `"error"` or `"skip"`.
    #[serde(default)]
    pub on_corrupt: OnCorrupt,
}

fn default_prefetch() -> usize {
    2
}

impl Default for LoaderSettings {
    fn default() -> Self {
        Self {
            workers: None,
            prefetch: default_prefetch(),
            cache: false,
            on_corrupt: OnCorrupt::Error,
        }
    }
}

impl LoaderSettings {
    /// The number of worker threads to start.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

/// Which batches an epoch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    /// Samples per batch.
    pub batch_size: usize,
    /// A new random order on each pass over the data.
    pub shuffle: bool,
    /// Leave out the last, incomplete batch of each pass.
    pub drop_last: bool,
    /// The paper's fixed epoch length: this many batches, cycling through passes over the data (each pass
    /// freshly shuffled) across epoch boundaries. `None`: an epoch is one pass.
    pub iterations_per_epoch: Option<usize>,
}

impl BatchPlan {
    /// Whether the plan can draw batches from `set`: an error names the key to change (`batch_size`,
    /// `iterations_per_epoch`, `data`). [`Loader::new`] checks it; a run checks every stage's plan before
    /// its first stage starts.
    pub fn check(&self, set: &ImageSet) -> Result<(), DataError> {
        if self.batch_size == 0 {
            return Err(DataError::config("batch_size", "must be at least 1"));
        }
        if set.is_empty() {
            return Err(DataError::config(
                "data",
                format!("{} has no sample to load", set.name),
            ));
        }
        if self.drop_last && set.len() < self.batch_size {
            return Err(DataError::config(
                "batch_size",
                format!(
                    "{} has {} samples, fewer than one batch of {}; with drop_last no batch is left. Lower the batch size",
                    set.name,
                    set.len(),
                    self.batch_size
                ),
            ));
        }
        if self.iterations_per_epoch == Some(0) {
            return Err(DataError::config("iterations_per_epoch", "must be at least 1"));
        }
        Ok(())
    }

    /// In order, every sample once, the last batch possibly short: for evaluation.
    pub fn evaluation(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: false,
            drop_last: false,
            iterations_per_epoch: None,
        }
    }
}

/// One batch, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Pixels, `[len, 3, height, width]` row-major.
    pub images: Vec<f32>,
    /// Labels, one per image.
    pub labels: Vec<usize>,
    /// Index of each image in the image set.
    pub indices: Vec<usize>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Samples left out under `on_corrupt = "skip"`, with the reason.
    pub skipped: Vec<String>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image (every sample of it was skipped).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[len, 3, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.len(), 3, self.height, self.width]
    }

    /// The images whose label is one of `classes`, in their order (LOLSGD leaves classes out of a batch).
    pub fn restricted_to(self, classes: &[usize]) -> Batch {
        if self.labels.iter().all(|label| classes.contains(label)) {
            return self;
        }
        let pixels = 3 * self.height * self.width;
        let kept: Vec<usize> = (0..self.len())
            .filter(|&row| classes.contains(&self.labels[row]))
            .collect();
        Batch {
            images: (kept.iter())
                .flat_map(|&row| self.images[row * pixels..(row + 1) * pixels].iter().copied())
                .collect(),
            labels: kept.iter().map(|&row| self.labels[row]).collect(),
            indices: kept.iter().map(|&row| self.indices[row]).collect(),
            height: self.height,
            width: self.width,
            skipped: self.skipped,
        }
    }

    /// The images as a float tensor `[B, 3, H, W]` and the labels as an integer tensor `[B]` on `device`.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let images = Tensor::<4>::from_data(TensorData::new(self.images.clone(), self.shape()), device);
        let labels: Vec<i64> = self.labels.iter().map(|label| *label as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [self.len()]), device);
        (images, labels)
    }
}

struct Shared {
    set: ImageSet,
    pipeline: Pipeline,
    seed: u64,
    on_corrupt: OnCorrupt,
    cache: Option<Vec<OnceLock<Arc<RgbImage>>>>,
}

/// Produces the batches of an image set through a pipeline.
#[derive(Clone)]
pub struct Loader {
    shared: Arc<Shared>,
    plan: BatchPlan,
    workers: usize,
    prefetch: usize,
}

/// Where one sample of a batch comes from: its index and the pass over the data it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Draw {
    sample: usize,
    pass: u64,
}

impl Loader {
    /// A loader of `set` through `pipeline`; `seed` fixes the order and the augmentation.
    pub fn new(
        set: ImageSet,
        pipeline: Pipeline,
        plan: BatchPlan,
        seed: u64,
        settings: &LoaderSettings,
    ) -> Result<Self, DataError> {
        plan.check(&set)?;
        let cache = settings
            .cache
            .then(|| (0..set.len()).map(|_| OnceLock::new()).collect());
        Ok(Self {
            shared: Arc::new(Shared {
                set,
                pipeline,
                seed,
                on_corrupt: settings.on_corrupt,
                cache,
            }),
            plan,
            workers: settings.worker_count(),
            prefetch: settings.prefetch.max(1),
        })
    }

    /// The image set.
    pub fn set(&self) -> &ImageSet {
        &self.shared.set
    }

    /// The batch plan.
    pub fn plan(&self) -> BatchPlan {
        self.plan
    }

    /// The same loader with another number of worker threads (the batches do not change).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Batches in one pass over the data.
    pub fn batches_per_pass(&self) -> usize {
        let samples = self.shared.set.len();
        if self.plan.drop_last {
            samples / self.plan.batch_size
        } else {
            samples.div_ceil(self.plan.batch_size)
        }
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.plan
            .iterations_per_epoch
            .unwrap_or_else(|| self.batches_per_pass())
    }

    /// The sample order of pass `pass`.
    fn pass_order(&self, pass: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shared.set.len()).collect();
        if self.plan.shuffle {
            // A stream of its own, apart from the augmentation's (seed, pass, sample) streams.
            let mut rng = ChaCha8Rng::seed_from_u64(self.shared.seed ^ 0x6f72_6465_725f_7368);
            rng.set_stream(pass);
            order.shuffle(&mut rng);
        }
        order
    }

    /// The draws of every batch of `epoch`.
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<Draw>> {
        let per_pass = self.batches_per_pass();
        let size = self.plan.batch_size;
        let (first, count) = match self.plan.iterations_per_epoch {
            Some(iterations) => (epoch * iterations, iterations),
            None => (epoch * per_pass, per_pass),
        };
        let mut orders: Vec<(u64, Vec<usize>)> = Vec::new();
        (first..first + count)
            .map(|global| {
                let pass = (global / per_pass) as u64;
                let within = global % per_pass;
                if orders.last().is_none_or(|(cached, _)| *cached != pass) {
                    orders.push((pass, self.pass_order(pass)));
                }
                let order = &orders.last().expect("just pushed").1;
                let end = ((within + 1) * size).min(order.len());
                order[within * size..end]
                    .iter()
                    .map(|&sample| Draw { sample, pass })
                    .collect()
            })
            .collect()
    }

    /// The batches of `epoch`, built ahead on worker threads.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on (0-based): the same batches [`Self::epoch`] yields
    /// there, without building the earlier ones (a run resumed in the middle of an epoch).
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Epoch {
        let mut plan = self.epoch_plan(epoch);
        plan.drain(..first.min(plan.len()));
        let plan = Arc::new(plan);
        if self.workers == 0 {
            return Epoch {
                plan,
                next: 0,
                mode: Mode::Inline {
                    shared: self.shared.clone(),
                    resizer: Box::new(Resizer::new()),
                },
            };
        }
        let workers = self.workers.min(plan.len().max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (sender, receiver) = sync_channel(self.prefetch);
            receivers.push(receiver);
            let (shared, plan, stop) = (self.shared.clone(), plan.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                run_worker(&shared, &plan, worker, workers, &sender, &stop)
            }));
        }
        Epoch {
            plan,
            next: 0,
            mode: Mode::Threads {
                receivers,
                handles,
                stop,
            },
        }
    }
}

fn run_worker(
    shared: &Shared,
    plan: &[Vec<Draw>],
    worker: usize,
    workers: usize,
    sender: &SyncSender<Result<Batch, DataError>>,
    stop: &AtomicBool,
) {
    let mut resizer = Resizer::new();
    for draws in plan.iter().skip(worker).step_by(workers) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let batch = build_batch(shared, draws, &mut resizer);
        let failed = batch.is_err();
        if sender.send(batch).is_err() || failed {
            return;
        }
    }
}

/// The image of `sample` and how many pipeline steps have already run on it: with the cache on, the
/// cache keeps the output of the pipeline's deterministic prefix (decoded and, for evaluation, resized).
fn load_image(
    shared: &Shared,
    sample: usize,
    resizer: &mut Resizer,
) -> Result<(Arc<RgbImage>, usize), DataError> {
    match &shared.cache {
        Some(cache) => {
            let prefix = shared.pipeline.deterministic_prefix();
            if let Some(image) = cache[sample].get() {
                return Ok((image.clone(), prefix));
            }
            let decoded = Arc::unwrap_or_clone(shared.set.load(sample)?);
            let image = Arc::new(shared.pipeline.apply_prefix(decoded, prefix, resizer)?);
            Ok((cache[sample].get_or_init(|| image).clone(), prefix))
        }
        None => Ok((shared.set.load(sample)?, 0)),
    }
}

fn build_batch(shared: &Shared, draws: &[Draw], resizer: &mut Resizer) -> Result<Batch, DataError> {
    let (height, width) = shared.pipeline.output_size();
    let (height, width) = (height as usize, width as usize);
    let per_image = 3 * height * width;
    let mut batch = Batch {
        images: vec![0.0; draws.len() * per_image],
        labels: Vec::with_capacity(draws.len()),
        indices: Vec::with_capacity(draws.len()),
        height,
        width,
        skipped: Vec::new(),
    };
    for draw in draws {
        let sample = &shared.set.samples[draw.sample];
        let (image, steps_done) = match load_image(shared, draw.sample, resizer) {
            Ok(loaded) => loaded,
            Err(error) if shared.on_corrupt == OnCorrupt::Skip => {
                batch.skipped.push(format!("{}: {error}", sample.describe()));
                continue;
            }
            Err(error) => {
                return Err(match error {
                    DataError::Image { message, .. } => DataError::image(
                        sample.describe(),
                        format!("{message} (set data.loader.on_corrupt = \"skip\" to leave such images out)"),
                    ),
                    other => other,
                });
            }
        };
        let slot = batch.labels.len() * per_image;
        let mut rng = sample_rng(shared.seed, draw.pass, draw.sample as u64);
        shared.pipeline.apply_from(
            steps_done,
            &image,
            &mut rng,
            resizer,
            &mut batch.images[slot..slot + per_image],
        )?;
        batch.labels.push(sample.label);
        batch.indices.push(draw.sample);
    }
    batch.images.truncate(batch.labels.len() * per_image);
    Ok(batch)
}

enum Mode {
    Inline {
        shared: Arc<Shared>,
        resizer: Box<Resizer>,
    },
    Threads {
        receivers: Vec<Receiver<Result<Batch, DataError>>>,
        handles: Vec<JoinHandle<()>>,
        stop: Arc<AtomicBool>,
    },
}

/// The batches of one epoch, in order; an iterator of `Result<Batch, DataError>`.
pub struct Epoch {
    plan: Arc<Vec<Vec<Draw>>>,
    next: usize,
    mode: Mode,
}

impl Epoch {
    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        self.plan.len()
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let index = self.next;
        if index >= self.plan.len() {
            return None;
        }
        self.next += 1;
        let batch = match &mut self.mode {
            Mode::Inline { shared, resizer } => build_batch(shared, &self.plan[index], resizer),
            Mode::Threads { receivers, .. } => {
                let receiver = &receivers[index % receivers.len()];
                receiver.recv().unwrap_or_else(|_| {
                    Err(DataError::config(
                        "data.loader",
                        "a loader thread stopped unexpectedly (it panicked)",
                    ))
                })
            }
        };
        if batch.is_err() {
            // The worker that failed has stopped; end the epoch here rather than wait for its later batches.
            self.next = self.plan.len();
        }
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.plan.len() - self.next;
        (left, Some(left))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Mode::Threads {
            receivers,
            handles,
            stop,
        } = &mut self.mode
        {
            stop.store(true, Ordering::Relaxed);
            // Dropping the receivers wakes workers blocked on a full queue.
            receivers.clear();
            for handle in handles.drain(..) {
                let _ = handle.join();
            }
        }
    }
}
