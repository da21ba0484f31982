//! Partial-class image datasets, class spaces, transforms and the parallel batch loader (not yet written: issue 3).

#![warn(missing_docs)]
