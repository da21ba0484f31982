//! The training loop, optimizers, schedules, fine-tuning methods and checkpoints (not yet written: issue 5).

#![warn(missing_docs)]
