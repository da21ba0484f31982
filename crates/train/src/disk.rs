//! What a run will put on disk, estimated before it starts (`ftcal run` prints it), from the sizes of its
//! data and model and the `[eval]` settings: the evaluation outputs dominate on large datasets.

use std::fmt;

use ftcal_eval::Precision;

/// The sizes a run's disk use follows from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSizes {
    /// Images of each evaluated split (the target's training and test splits, as configured).
    pub split_images: Vec<usize>,
    /// Logits per image (classes).
    pub classes: usize,
    /// Penultimate features per image.
    pub feature_dim: usize,
    /// How many evaluations are made (the pre-trained model and the evaluated epochs), and how many of
    /// them keep their features.
    pub evaluations: usize,
    /// Of `evaluations`, those that keep their features.
    pub evaluations_with_features: usize,
    /// PCV folds, and the training images of S each fold's outputs cover.
    pub pcv_folds: usize,
    /// Training images of S.
    pub fine_tuning_images: usize,
    /// Trainable parameters and buffers of the model.
    pub parameters: usize,
    /// Models saved whole (the fine-tuned one, and the source one when trained).
    pub saved_models: usize,
    /// Optimizer state tensors per parameter (SGD with momentum 1, Adam 2).
    pub optimizer_tensors: usize,
    /// How the outputs store their floats.
    pub precision: Precision,
}

/// The estimate, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    /// `outputs/<split>/<epoch>.safetensors`.
    pub outputs: u64,
    /// `outputs/pcv/`.
    pub pcv: u64,
    /// `models/`.
    pub models: u64,
    /// The most `checkpoints/` holds at once: while a stage writes its next checkpoint beside its last.
    pub checkpoints: u64,
}

impl DiskUse {
    /// The estimate of a run of `sizes`.
    pub fn of(sizes: &RunSizes) -> Self {
        let float = match sizes.precision {
            Precision::Float32 => 4,
            Precision::Float16 => 2,
        } as u64;
        let images: u64 = sizes.split_images.iter().map(|&n| n as u64).sum();
        // Logits and labels (i64) of every evaluation; features of some.
        let logits = images * (sizes.classes as u64 * float + 8);
        let features = images * sizes.feature_dim as u64 * float;
        let outputs = sizes.evaluations as u64 * logits + sizes.evaluations_with_features as u64 * features;
        let pcv = (sizes.pcv_folds * sizes.fine_tuning_images) as u64 * (sizes.classes as u64 * float + 8);
        let model = sizes.parameters as u64 * 4;
        let checkpoint = model * (1 + sizes.optimizer_tensors as u64);
        DiskUse {
            outputs,
            pcv,
            models: sizes.saved_models as u64 * model,
            checkpoints: 2 * checkpoint,
        }
    }

    /// Everything at its peak.
    pub fn total(&self) -> u64 {
        self.outputs + self.pcv + self.models + self.checkpoints
    }
}

/// Bytes as a person reads them: `1.2 GB`, `840 MB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0 as f64;
        match self.0 {
            0..1_000_000 => write!(f, "{:.0} kB", bytes / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.0} MB", bytes / 1e6),
            _ => write!(f, "{:.1} GB", bytes / 1e9),
        }
    }
}

impl fmt::Display for DiskUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "about {}: evaluation outputs {}, PCV outputs {}, models {}, checkpoints up to {} while a stage trains",
            Bytes(self.total()),
            Bytes(self.outputs),
            Bytes(self.pcv),
            Bytes(self.models),
            Bytes(self.checkpoints)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ImageNet-Sketch with the paper's protocol (50 epochs, every one evaluated, 3 PCV folds, ResNet-50
    /// with SGD and momentum), before `[eval.save]` existed (features of every epoch, float32) and with
    /// the shipped config.
    fn imagenet_sketch(evaluations: usize, with_features: usize, precision: Precision) -> DiskUse {
        DiskUse::of(&RunSizes {
            split_images: vec![40_889, 10_000],
            classes: 1000,
            feature_dim: 2048,
            evaluations,
            evaluations_with_features: with_features,
            pcv_folds: 3,
            fine_tuning_images: 20_000,
            parameters: 25_557_032 + 53_120,
            saved_models: 1,
            optimizer_tensors: 1,
            precision,
        })
    }

    #[test]
    fn the_outputs_of_imagenet_sketch_are_what_the_sizes_say() {
        let before = imagenet_sketch(51, 51, Precision::Float32);
        // 50,889 images × (1000 logits + 2048 features) × 4 bytes + labels, 51 times.
        assert_eq!(before.outputs, 51 * 50_889 * (1000 * 4 + 8 + 2048 * 4));
        assert_eq!(format!("{}", Bytes(before.outputs)), "31.7 GB");
        let ends = imagenet_sketch(51, 2, Precision::Float32);
        assert_eq!(format!("{}", Bytes(ends.outputs)), "11.2 GB");
        // configs/imagenet-sketch.toml: every fifth epoch evaluated, features at the ends.
        let shipped = imagenet_sketch(11, 2, Precision::Float32);
        assert_eq!(format!("{}", Bytes(shipped.outputs)), "3.1 GB");
        let half = imagenet_sketch(11, 2, Precision::Float16);
        assert_eq!(format!("{}", Bytes(half.outputs)), "1.5 GB");
        assert!(half.total() < before.total() / 10);
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(Bytes(999).to_string(), "1 kB");
        assert_eq!(Bytes(840_000_000).to_string(), "840 MB");
        assert_eq!(Bytes(1_234_000_000).to_string(), "1.2 GB");
    }
}
