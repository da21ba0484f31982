//! Partial-class image datasets, class spaces, transforms and the parallel batch loader of ftcal.
//!
//! Each stage has one module: [`sources`] lists the images of a dataset `kind`, [`presets`] and [`classes`]
//! give the class space and its split into fine-tuning classes S and absent classes U, [`decode`] reads
//! image files, [`transforms`] augments them as torchvision does, [`loader`] turns them into batches of
//! burn tensors, and [`check`] is `ftcal data check`.

#![warn(missing_docs)]

pub mod check;
pub mod classes;
pub mod config;
pub mod dataset;
pub mod decode;
mod error;
pub mod loader;
pub mod presets;
pub mod sources;
pub mod transforms;

pub use classes::{ClassSplit, ClassesConfig};
pub use config::{DataConfig, PartialClassData};
pub use dataset::{Dataset, ImageOrigin, ImageSet, Problem, ProblemKind, Sample};
pub use error::DataError;
pub use loader::{Batch, BatchPlan, Loader, LoaderSettings, OnCorrupt};
pub use sources::DatasetConfig;
pub use transforms::{Pipeline, TransformSpec};
