//! Every file ftcal writes goes through here: atomically (a temporary file beside it, fsync, rename,
//! fsync of the folder), and, for `.safetensors`, with a header laid out the same way every time, so
//! that identical content gives identical bytes (files can be compared and cached by hash).
//!
//! The `safetensors` crate's own `serialize` takes the `__metadata__` as a `HashMap`, whose order changes
//! from one process to the next; this writer orders everything itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use safetensors::Dtype;

use crate::EvalError;

/// The suffix of the temporary files [`write_atomic`] writes beside their target (`.NAME.XXXXXX.partial`).
/// One left behind by a killed process is garbage: a run removes them when it starts.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// One tensor to write: its name, element type, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorBytes {
    /// The tensor's key in the file.
    pub name: String,
    /// The element type.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<usize>,
    /// `shape.iter().product() × dtype.size()` little-endian bytes.
    pub bytes: Vec<u8>,
}

/// The bytes of a `.safetensors` file holding `tensors` and `metadata`, the same bytes for the same
/// content: the header lists `__metadata__` (keys sorted) first, then the tensors in the order of their
/// data, which is by decreasing dtype, then by name (the `safetensors` crate's order).
pub fn safetensors_bytes(
    tensors: &[TensorBytes],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut order: Vec<&TensorBytes> = tensors.iter().collect();
    order.sort_by(|a, b| b.dtype.cmp(&a.dtype).then_with(|| a.name.cmp(&b.name)));
    let mut names = std::collections::BTreeSet::new();
    if let Some(twice) = tensors.iter().find(|tensor| !names.insert(&tensor.name)) {
        return Err(format!("the tensor name `{}` is used twice", twice.name));
    }
    let mut header = String::from("{");
    let mut entries = Vec::new();
    if !metadata.is_empty() {
        entries.push(format!("\"__metadata__\":{}", json(metadata)));
    }
    let mut offset = 0usize;
    for tensor in &order {
        let expected = (tensor.shape.iter().product::<usize>() * tensor.dtype.bitsize()).div_ceil(8);
        if tensor.bytes.len() != expected {
            return Err(format!(
                "tensor `{}`: {} bytes for shape {:?} of {:?} ({expected} expected)",
                tensor.name,
                tensor.bytes.len(),
                tensor.shape,
                tensor.dtype
            ));
        }
        entries.push(format!(
            "{}:{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{offset},{}]}}",
            json(&tensor.name),
            json(&tensor.dtype),
            json(&tensor.shape),
            offset + expected
        ));
        offset += expected;
    }
    header.push_str(&entries.join(","));
    header.push('}');
    // The data starts 8-byte aligned, the header padded with spaces, as the format's writers do.
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for tensor in order {
        bytes.extend_from_slice(&tensor.bytes);
    }
    Ok(bytes)
}

/// JSON text of a header value (a string, a shape, a dtype, the metadata map).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("strings, numbers and dtypes serialise")
}

/// Writes a `.safetensors` file of `tensors` and `metadata` atomically, with deterministic bytes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorBytes],
    metadata: &BTreeMap<String, String>,
) -> Result<(), EvalError> {
    let bytes = safetensors_bytes(tensors, metadata)
        .map_err(|message| EvalError::format(path, format!("cannot serialise: {message}")))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that a reader,
/// a killed process or a full disk never leaves a half-written file under `path`: either the old content
/// or the new one. On an error the temporary file is removed and the error names `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(PARTIAL_SUFFIX);
    // A temporary file is private (0600) by default; a result file should be readable like any other.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut file = builder
        .tempfile_in(directory)
        .map_err(|e| EvalError::io(path, e))?;
    // Dropping `file` on an error below removes the temporary file.
    if let Some(error) = injected_fault(path) {
        file.write_all(&bytes[..bytes.len() / 2])
            .map_err(|e| EvalError::io(path, e))?;
        return Err(EvalError::io(path, error));
    }
    file.write_all(bytes).map_err(|e| EvalError::io(path, e))?;
    file.as_file().sync_all().map_err(|e| EvalError::io(path, e))?;
    file.persist(path).map_err(|e| EvalError::io(path, e.error))?;
    // The rename is durable once the folder is synced too (a power cut could otherwise undo it).
    #[cfg(unix)]
    if let Ok(folder) = std::fs::File::open(directory) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// A write that is made to fail, for testing what a full or read-only disk does to a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFault {
    /// The fault hits writes whose path contains this.
    pub path_contains: String,
    /// It hits the `nth` such write (1-based) and every later one.
    pub nth: usize,
    /// The error the writes get.
    pub kind: std::io::ErrorKind,
}

static WRITE_FAULT: Mutex<Option<(WriteFault, usize)>> = Mutex::new(None);

/// From now on in this process, the `fault.nth` and every later [`write_atomic`] of a path containing
/// `fault.path_contains` writes half its bytes and fails with `fault.kind` (a test hook: `ftcal run`'s
/// hidden `--fail-writes`). `None` turns it off.
pub fn inject_write_fault(fault: Option<WriteFault>) {
    *WRITE_FAULT.lock().unwrap_or_else(|e| e.into_inner()) = fault.map(|fault| (fault, 0));
}

fn injected_fault(path: &Path) -> Option<std::io::Error> {
    let mut guard = WRITE_FAULT.lock().unwrap_or_else(|e| e.into_inner());
    let (fault, seen) = guard.as_mut()?;
    if !path.to_string_lossy().contains(&fault.path_contains) {
        return None;
    }
    *seen += 1;
    (*seen >= fault.nth).then(|| std::io::Error::new(fault.kind, format!("{} (injected)", fault.kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dtype: Dtype, values: &[f32]) -> TensorBytes {
        let bytes: Vec<u8> = match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::I64 => values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            other => panic!("{other:?}"),
        };
        TensorBytes {
            name: name.into(),
            dtype,
            shape: vec![values.len()],
            bytes,
        }
    }

    fn sample() -> (Vec<TensorBytes>, BTreeMap<String, String>) {
        let tensors = vec![
            tensor("z.weight", Dtype::F32, &[1.0, -2.5, 3.25]),
            tensor("labels", Dtype::I64, &[4.0, 0.0]),
            tensor("a.half", Dtype::F16, &[0.5]),
            tensor("a.bias", Dtype::F32, &[7.0]),
        ];
        let metadata = [
            ("format", "pt"),
            ("ftcal_model", "family = \"resnet\"\n"),
            ("b", "2"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter()
        .collect();
        (tensors, metadata)
    }

    #[test]
    fn the_file_is_what_the_safetensors_crate_reads_and_writes() {
        let (tensors, metadata) = sample();
        let bytes = safetensors_bytes(&tensors, &metadata).unwrap();
        let read = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for tensor in &tensors {
            let view = read.tensor(&tensor.name).unwrap();
            assert_eq!(view.dtype(), tensor.dtype);
            assert_eq!(view.shape(), tensor.shape.as_slice());
            assert_eq!(view.data(), tensor.bytes.as_slice());
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let read_metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap().into_iter().collect();
        assert_eq!(read_metadata, metadata);

        // Without metadata the crate's own writer lays the file out byte for byte the same.
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|t| {
                let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap();
                (t.name.clone(), view)
            })
            .collect();
        let theirs = safetensors::serialize(views, None).unwrap();
        assert_eq!(safetensors_bytes(&tensors, &BTreeMap::new()).unwrap(), theirs);
    }

    #[test]
    fn the_same_content_gives_the_same_bytes_whatever_the_order_it_comes_in() {
        let (tensors, metadata) = sample();
        let first = safetensors_bytes(&tensors, &metadata).unwrap();
        let mut reversed = tensors.clone();
        reversed.reverse();
        assert_eq!(safetensors_bytes(&reversed, &metadata).unwrap(), first);
        let mut changed = tensors;
        changed[0].bytes[0] ^= 1;
        assert_ne!(safetensors_bytes(&changed, &metadata).unwrap(), first);
    }

    #[test]
    fn bad_tensors_are_refused() {
        let (mut tensors, metadata) = sample();
        tensors[1].bytes.pop();
        let error = safetensors_bytes(&tensors, &metadata).unwrap_err();
        assert!(error.contains("tensor `labels`: 15 bytes"), "{error}");
        let (mut tensors, _) = sample();
        tensors[1].name = "z.weight".into();
        let error = safetensors_bytes(&tensors, &metadata).unwrap_err();
        assert!(error.contains("`z.weight` is used twice"), "{error}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        write_atomic(&path, b"old").unwrap();
        inject_write_fault(Some(WriteFault {
            path_contains: "result.json".into(),
            nth: 2,
            kind: std::io::ErrorKind::StorageFull,
        }));
        let other = dir.path().join("other.json");
        write_atomic(&other, b"unaffected").unwrap();
        write_atomic(&path, b"first matching write succeeds").unwrap();
        let error = write_atomic(&path, b"new content").unwrap_err().to_string();
        inject_write_fault(None);
        assert!(error.contains("result.json"), "{error}");
        assert!(error.contains("free some space"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first matching write succeeds");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        write_atomic(&path, b"new content").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
    }
}
