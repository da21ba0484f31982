//! Decoding image files: the format is read from the bytes, and absurd sizes are refused before
//! anything is allocated.

use std::io::Cursor;
use std::path::Path;

use image::{ImageReader, Limits, RgbImage};

use crate::DataError;

/// Largest width or height accepted (a 16k-pixel side is larger than any image in these benchmarks).
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation accepted, in bytes.
pub const MAX_ALLOC: u64 = 1 << 30;

/// Decodes `bytes` to 8-bit RGB, as torchvision's loader does (`PIL.Image.open(f).convert("RGB")`):
/// grey is replicated to three channels, alpha dropped, 16-bit narrowed. `origin` names the file in errors.
pub fn decode_bytes(bytes: &[u8], origin: &Path) -> Result<RgbImage, DataError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| DataError::image(origin, error.to_string()))?;
    if reader.format().is_none() {
        return Err(DataError::image(
            origin,
            "not an image in a known format (JPEG, PNG, BMP, GIF, TIFF, WebP), whatever its extension",
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|error| {
        let message = match error {
            image::ImageError::Limits(_) => format!(
                "refused: its header claims a size beyond {MAX_SIDE}×{MAX_SIDE} pixels or {} MiB \
                 (a decompression bomb, or a corrupt header)",
                MAX_ALLOC >> 20
            ),
            other => format!("cannot decode: {other}"),
        };
        DataError::image(origin, message)
    })?;
    Ok(image.into_rgb8())
}

/// Reads and decodes the image file at `path`.
pub fn decode_file(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|error| DataError::io(path, error))?;
    decode_bytes(&bytes, path)
}
