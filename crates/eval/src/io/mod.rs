//! Reading saved scores (`.safetensors` or `.npz`, as PyTorch and NumPy users write them), writing them
//! back as `.safetensors`, and atomic file writes.
//!
//! A scores file holds `logits` [N, C] (any float type), `labels` [N] (any integer type) and, optionally,
//! `features` [N, D]. The format is detected from the bytes, not the file name.

mod npy;
mod write;

pub use write::{
    PARTIAL_SUFFIX, TensorBytes, WriteFault, inject_write_fault, safetensors_bytes, write_atomic,
    write_safetensors,
};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::EvalError;
use crate::scores::{Matrix, Precision, Scores};

/// The element types a scores file may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ElementType {
    F16,
    BF16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    Other(String),
}

impl ElementType {
    fn size(&self) -> Option<usize> {
        use ElementType::*;
        Some(match self {
            I8 | U8 | Bool => 1,
            F16 | BF16 | I16 | U16 => 2,
            F32 | I32 | U32 => 4,
            F64 | I64 | U64 => 8,
            Other(_) => return None,
        })
    }

    fn name(&self) -> String {
        match self {
            ElementType::Other(name) => name.clone(),
            known => format!("{known:?}").to_lowercase(),
        }
    }
}

/// One array as stored: element type, shape and raw bytes.
#[derive(Debug)]
struct RawTensor<'a> {
    dtype: ElementType,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
    big_endian: bool,
    fortran_order: bool,
}

impl RawTensor<'_> {
    fn elements<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        let big_endian = self.big_endian;
        self.data.chunks_exact(N).map(move |chunk| {
            let mut bytes: [u8; N] = chunk.try_into().expect("chunks_exact yields N bytes");
            if big_endian {
                bytes.reverse();
            }
            bytes
        })
    }

    fn to_f32(&self) -> Result<Vec<f32>, String> {
        use ElementType::*;
        let values: Vec<f32> = match self.dtype {
            F16 => self
                .elements::<2>()
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
            BF16 => self
                .elements::<2>()
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect(),
            F32 => self.elements::<4>().map(f32::from_le_bytes).collect(),
            F64 => self
                .elements::<8>()
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
            _ => return Err(format!("must be a float array, found {}", self.dtype.name())),
        };
        Ok(self.reorder(values))
    }

    fn to_i64(&self) -> Result<Vec<i64>, String> {
        use ElementType::*;
        // Values beyond i64 are clamped: any of them is out of the class range and reported as such.
        let values: Vec<i64> = match self.dtype {
            I8 => self
                .elements::<1>()
                .map(|b| i64::from(i8::from_le_bytes(b)))
                .collect(),
            I16 => self
                .elements::<2>()
                .map(|b| i64::from(i16::from_le_bytes(b)))
                .collect(),
            I32 => self
                .elements::<4>()
                .map(|b| i64::from(i32::from_le_bytes(b)))
                .collect(),
            I64 => self.elements::<8>().map(i64::from_le_bytes).collect(),
            U8 => self.elements::<1>().map(|b| i64::from(b[0])).collect(),
            U16 => self
                .elements::<2>()
                .map(|b| i64::from(u16::from_le_bytes(b)))
                .collect(),
            U32 => self
                .elements::<4>()
                .map(|b| i64::from(u32::from_le_bytes(b)))
                .collect(),
            U64 => self
                .elements::<8>()
                .map(|b| i64::try_from(u64::from_le_bytes(b)).unwrap_or(i64::MAX))
                .collect(),
            _ => {
                return Err(format!(
                    "must be an integer array (class indices), found {}; in PyTorch save `labels.long()`",
                    self.dtype.name()
                ));
            }
        };
        Ok(self.reorder(values))
    }

    /// Turns a column-major (Fortran-order) 2-D array into row-major.
    fn reorder<T: Copy>(&self, values: Vec<T>) -> Vec<T> {
        match (self.fortran_order, self.shape.as_slice()) {
            (true, &[rows, cols]) if rows > 1 && cols > 1 => {
                let mut out = Vec::with_capacity(values.len());
                for row in 0..rows {
                    out.extend((0..cols).map(|col| values[col * rows + row]));
                }
                out
            }
            _ => values,
        }
    }
}

/// Reads a scores file: `.safetensors` or `.npz` with `logits`, `labels` and optional `features`.
///
/// Every problem is an error naming the file and the tensor: a missing tensor, a wrong type or rank,
/// mismatched row counts, a label outside `0..C`, a NaN or infinite value.
pub fn read_scores(path: &Path) -> Result<Scores, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        let mut arrays = NpzArchive::open(path, bytes)?;
        let logits = arrays.take("logits")?;
        let labels = arrays.take("labels")?;
        let features = arrays.take_optional("features")?;
        build_scores(path, logits, labels, features)
    } else if bytes.starts_with(b"\x93NUMPY") {
        Err(EvalError::format(
            path,
            "a .npy file holds one array; save `logits` and `labels` together with numpy.savez",
        ))
    } else {
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| {
            EvalError::format(
                path,
                format!("neither a .npz archive nor a valid .safetensors file ({e})"),
            )
        })?;
        let take = |name: &str| safetensor(&tensors, name);
        let logits = take("logits").ok_or_else(|| missing(path, "logits", tensors.names()))?;
        let labels = take("labels").ok_or_else(|| missing(path, "labels", tensors.names()))?;
        build_scores(path, logits, labels, take("features"))
    }
}

fn safetensor<'a>(tensors: &SafeTensors<'a>, name: &str) -> Option<RawTensor<'a>> {
    let view = tensors.tensor(name).ok()?;
    let dtype = match view.dtype() {
        Dtype::F16 => ElementType::F16,
        Dtype::BF16 => ElementType::BF16,
        Dtype::F32 => ElementType::F32,
        Dtype::F64 => ElementType::F64,
        Dtype::I8 => ElementType::I8,
        Dtype::I16 => ElementType::I16,
        Dtype::I32 => ElementType::I32,
        Dtype::I64 => ElementType::I64,
        Dtype::U8 => ElementType::U8,
        Dtype::U16 => ElementType::U16,
        Dtype::U32 => ElementType::U32,
        Dtype::U64 => ElementType::U64,
        Dtype::BOOL => ElementType::Bool,
        other => ElementType::Other(format!("{other:?}")),
    };
    Some(RawTensor {
        dtype,
        shape: view.shape().to_vec(),
        data: Cow::Borrowed(view.data()),
        big_endian: false,
        fortran_order: false,
    })
}

fn missing<'a>(path: &Path, name: &str, found: impl IntoIterator<Item = &'a str>) -> EvalError {
    let mut found: Vec<&str> = found.into_iter().collect();
    found.sort_unstable();
    let found = if found.is_empty() {
        "nothing".to_owned()
    } else {
        found.join(", ")
    };
    EvalError::format(
        path,
        format!("no tensor `{name}` (the file holds: {found}); scores files need `logits` and `labels`"),
    )
}

struct NpzArchive<'p> {
    path: &'p Path,
    archive: zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
}

impl<'p> NpzArchive<'p> {
    fn open(path: &'p Path, bytes: Vec<u8>) -> Result<Self, EvalError> {
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| EvalError::format(path, format!("not a readable .npz (zip) archive: {e}")))?;
        Ok(NpzArchive { path, archive })
    }

    fn names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .filter_map(|name| name.ok())
            .map(|name| name.into_owned())
            .collect()
    }

    fn take(&mut self, name: &str) -> Result<RawTensor<'static>, EvalError> {
        match self.take_optional(name)? {
            Some(tensor) => Ok(tensor),
            None if self.names().iter().any(|n| n.ends_with(".pkl")) => Err(EvalError::format(
                self.path,
                "this is a PyTorch torch.save archive, not an .npz; ftcal never unpickles files: save with \
                 safetensors.torch.save_file or numpy.savez",
            )),
            None => {
                let names = self.names();
                Err(missing(
                    self.path,
                    name,
                    names.iter().map(|n| n.trim_end_matches(".npy")),
                ))
            }
        }
    }

    fn take_optional(&mut self, name: &str) -> Result<Option<RawTensor<'static>>, EvalError> {
        let entry_name = format!("{name}.npy");
        let mut entry = match self.archive.by_name(&entry_name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(EvalError::format(self.path, format!("`{entry_name}`: {e}"))),
        };
        // The declared size is only a hint for the allocation: a lying header must not allocate gigabytes.
        let mut bytes = Vec::with_capacity((entry.size() as usize).min(1 << 28));
        entry.read_to_end(&mut bytes).map_err(|e| {
            EvalError::format(self.path, format!("`{entry_name}` cannot be decompressed: {e}"))
        })?;
        npy::parse(bytes)
            .map(Some)
            .map_err(|message| EvalError::format(self.path, format!("`{entry_name}`: {message}")))
    }
}

fn build_scores(
    path: &Path,
    logits: RawTensor<'_>,
    labels: RawTensor<'_>,
    features: Option<RawTensor<'_>>,
) -> Result<Scores, EvalError> {
    let bad = |name: &str, message: String| EvalError::format(path, format!("`{name}` {message}"));
    let matrix = |name: &str, tensor: &RawTensor<'_>| -> Result<Matrix<f32>, EvalError> {
        let &[rows, cols] = tensor.shape.as_slice() else {
            return Err(bad(
                name,
                format!(
                    "must be 2-D [N, {}], found shape {:?}",
                    if name == "logits" { "C" } else { "D" },
                    tensor.shape
                ),
            ));
        };
        let values = tensor.to_f32().map_err(|m| bad(name, m))?;
        Ok(Matrix::new(rows, cols, values).expect("shape and byte count were checked"))
    };
    let logits_matrix = matrix("logits", &logits)?;
    let label_values = match labels.shape.as_slice() {
        [_] => labels.to_i64().map_err(|m| bad("labels", m))?,
        shape => return Err(bad("labels", format!("must be 1-D [N], found shape {shape:?}"))),
    };
    let features = features.map(|f| matrix("features", &f)).transpose()?;
    Scores::new(path.display().to_string(), logits_matrix, &label_values, features)
}

/// Writes `scores` as `.safetensors` (`logits` F32, `labels` I64, `features` F32), atomically.
pub fn write_scores(path: &Path, scores: &Scores) -> Result<(), EvalError> {
    write_scores_as(path, scores, Precision::Float32)
}

/// Writes `scores` as `.safetensors` with logits and features in `precision` (labels I64), atomically;
/// [`read_scores`] reads either back as `f32`. Values are rounded to the nearest of the precision (see
/// [`Scores::rounded_to`], which gives the values such a file holds).
pub fn write_scores_as(path: &Path, scores: &Scores, precision: Precision) -> Result<(), EvalError> {
    let float_bytes = |m: &Matrix<f32>| -> (Dtype, Vec<u8>) {
        match precision {
            Precision::Float32 => (
                Dtype::F32,
                m.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Precision::Float16 => (
                Dtype::F16,
                m.as_slice()
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        }
    };
    let labels: Vec<u8> = scores
        .labels()
        .iter()
        .flat_map(|&y| i64::from(y).to_le_bytes())
        .collect();
    let (dtype, logits) = float_bytes(scores.logits());
    let mut tensors = vec![
        TensorBytes {
            name: "logits".into(),
            dtype,
            shape: vec![scores.len(), scores.num_classes()],
            bytes: logits,
        },
        TensorBytes {
            name: "labels".into(),
            dtype: Dtype::I64,
            shape: vec![scores.len()],
            bytes: labels,
        },
    ];
    if let Some(features) = scores.features() {
        let (dtype, bytes) = float_bytes(features);
        tensors.push(TensorBytes {
            name: "features".into(),
            dtype,
            shape: vec![features.rows(), features.cols()],
            bytes,
        });
    }
    write_safetensors(path, &tensors, &BTreeMap::new())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn npy(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn npz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_fortran_order_big_endian_arrays() {
        // logits [[1, 2, 3], [4, 5, 6]] stored column-major as big-endian f8.
        let data: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let labels: Vec<u8> = [2i32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "s.npz",
            &npz(&[
                ("logits.npy", npy(">f8", "(2, 3)", true, &data)),
                ("labels.npy", npy("<i4", "(2,)", false, &labels)),
            ]),
        );
        let scores = read_scores(&path).unwrap();
        assert_eq!(scores.logits().as_slice(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(scores.labels(), &[2, 0]);
        assert!(scores.features().is_none());
    }

    #[test]
    fn npz_errors_name_the_file_and_the_array() {
        let dir = tempfile::tempdir().unwrap();
        let logits = npy("<f4", "(1, 2)", false, &[0; 8]);
        let path = write(
            &dir,
            "a.npz",
            &npz(&[("logits.npy", logits.clone()), ("y.npy", vec![])]),
        );
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(message.ends_with("a.npz: no tensor `labels` (the file holds: logits, y); scores files need `logits` and `labels`"), "{message}");

        let float_labels = npy("<f4", "(1,)", false, &[0; 4]);
        let path = write(
            &dir,
            "b.npz",
            &npz(&[("logits.npy", logits.clone()), ("labels.npy", float_labels)]),
        );
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(
            message.contains("`labels` must be an integer array (class indices), found f32"),
            "{message}"
        );

        let path = write(&dir, "c.npz", &npz(&[("archive/data.pkl", vec![0x80])]));
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(message.contains("torch.save archive"), "{message}");

        let labels_2d = npy("<i8", "(1, 1)", false, &[0; 8]);
        let path = write(
            &dir,
            "d.npz",
            &npz(&[("logits.npy", logits), ("labels.npy", labels_2d)]),
        );
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(
            message.contains("`labels` must be 1-D [N], found shape [1, 1]"),
            "{message}"
        );
    }

    #[test]
    fn garbage_and_lone_npy_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "x.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":");
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(
            message.contains("neither a .npz archive nor a valid .safetensors file"),
            "{message}"
        );
        let path = write(&dir, "x.npy", &npy("<f4", "(1,)", false, &[0; 4]));
        let message = read_scores(&path).unwrap_err().to_string();
        assert!(message.contains("numpy.savez"), "{message}");
        let message = read_scores(&dir.path().join("absent.npz"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("absent.npz"), "{message}");
    }

    #[test]
    fn write_then_read_round_trips_safetensors() {
        let logits = Matrix::new(2, 3, vec![0.5f32, -1.0, 2.0, 3.0, 0.0, -0.25]).unwrap();
        let features = Matrix::new(2, 1, vec![1.0f32, 2.0]).unwrap();
        let scores = Scores::new("mem", logits, &[2, 1], Some(features)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.safetensors");
        write_scores(&path, &scores).unwrap();
        let back = read_scores(&path).unwrap();
        assert_eq!(back.logits(), scores.logits());
        assert_eq!(back.labels(), scores.labels());
        assert_eq!(back.features(), scores.features());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }
}
