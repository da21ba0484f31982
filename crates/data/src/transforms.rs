//! Image transforms with torchvision's definitions, seeded per (seed, pass, sample index).
//!
//! A pipeline has a geometric part, run on 8-bit RGB like torchvision's PIL path (the resize is an
//! antialiased bilinear convolution, as Pillow's), and a colour part, run on `f32` CHW in [0, 1] with the
//! formulas of torchvision's tensor path (`torchvision.transforms.v2.functional`). The one intended
//! difference from a PIL pipeline: colour jitter is computed in `f32` instead of PIL's 8-bit `blend`,
//! so it does not truncate to 1/255 after each of the four operations (see datasets/README.md).

use fast_image_resize::images::{CroppedImage, Image as ResizeImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// ImageNet's per-channel mean, used by timm's and torchvision's ImageNet models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Output height and width: `[h, w]`, or one number for a square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Size {
    /// A square `n × n`.
    Square(u32),
    /// `[height, width]`.
    HeightWidth([u32; 2]),
}

impl Size {
    /// `(height, width)`.
    pub fn height_width(self) -> (u32, u32) {
        match self {
            Size::Square(n) => (n, n),
            Size::HeightWidth([h, w]) => (h, w),
        }
    }
}

/// One step of a pipeline, as written in a config (`{ op = "resize", size = [224, 224] }`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `Resize(size)`: `[h, w]` exactly; one number resizes the shorter side to it, keeping the aspect
    /// ratio (the longer side truncated, as torchvision does).
    Resize {
        /// Target size.
        size: ResizeTarget,
    },
    /// `CenterCrop(size)`, after torchvision's rounding of the offsets.
    CenterCrop {
        /// Crop size.
        size: Size,
    },
    /// `RandomResizedCrop(size, scale, ratio)` with torchvision's 10-attempt sampler and its fallback.
    RandomResizedCrop {
        /// Output size.
        size: Size,
        /// Range of the crop's area as a fraction of the image's.
        #[serde(default = "default_crop_scale")]
        scale: [f64; 2],
        /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
        #[serde(default = "default_crop_ratio")]
        ratio: [f64; 2],
    },
    /// `RandomHorizontalFlip(p)`.
    HorizontalFlip {
        /// Probability of flipping.
        #[serde(default = "default_flip_p")]
        p: f64,
    },
    /// `ColorJitter(brightness, contrast, saturation, hue)`, the four in a random order.
    ColorJitter {
        /// Brightness factor drawn from [max(0, 1 − b), 1 + b].
        #[serde(default)]
        brightness: f64,
        /// Contrast factor drawn from [max(0, 1 − c), 1 + c].
        #[serde(default)]
        contrast: f64,
        /// Saturation factor drawn from [max(0, 1 − s), 1 + s].
        #[serde(default)]
        saturation: f64,
        /// Hue shift drawn from [−h, h], h ≤ 0.5.
        #[serde(default)]
        hue: f64,
    },
    /// `RandomGrayscale(p)`, keeping three channels.
    RandomGrayscale {
        /// Probability of converting to grey.
        p: f64,
    },
    /// `Normalize(mean, std)`, per channel.
    Normalize {
        /// Per-channel mean.
        mean: [f32; 3],
        /// Per-channel standard deviation.
        std: [f32; 3],
    },
}

/// The target of a resize: an exact size, or the length of the shorter side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ResizeTarget {
    /// Resize the shorter side to this length.
    ShorterSide(u32),
    /// `[height, width]`.
    Exact([u32; 2]),
}

fn default_crop_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_crop_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
fn default_flip_p() -> f64 {
    0.5
}

/// A pipeline in a config: a preset's name, or the list of steps.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TransformSpec {
    /// One of [`PRESETS`], e.g. `"paper_train"`.
    Preset(String),
    /// Explicit steps, in order.
    Steps(Vec<Step>),
}

/// The named pipelines: the paper's (docs/science.md §Protocol) and the small-image ones used for Digits-2.
pub const PRESETS: [&str; 4] = ["paper_train", "paper_eval", "digits_train", "digits_eval"];

/// The steps of a preset, or `None` for an unknown name.
pub fn preset_steps(name: &str) -> Option<Vec<Step>> {
    let imagenet_normalize = Step::Normalize {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    // Digits are grey strokes on a flat background; a neutral 0.5 normalisation keeps them centred.
    let digits_normalize = Step::Normalize {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let steps = match name {
        "paper_train" => vec![
            Step::RandomResizedCrop {
                size: Size::Square(224),
                scale: [0.7, 1.0],
                ratio: default_crop_ratio(),
            },
            Step::HorizontalFlip { p: 0.5 },
            Step::ColorJitter {
                brightness: 0.3,
                contrast: 0.3,
                saturation: 0.3,
                hue: 0.3,
            },
            Step::RandomGrayscale { p: 0.1 },
            imagenet_normalize,
        ],
        "paper_eval" => vec![
            Step::Resize {
                size: ResizeTarget::Exact([224, 224]),
            },
            imagenet_normalize,
        ],
        // No flip: a mirrored digit is another glyph (or no digit at all).
        // Digit size and aspect vary between domains (mnist's 20×20 boxes, optdigits' full 8×8 frame):
        // wide scale and ratio ranges let a source model transfer (pre-trained Acc_{Y/Y} on optdigits
        // 12.6 % with 0.8–1 / 0.9–1.1, 35.4 % with these; configs/quickstart.toml).
        "digits_train" => vec![
            Step::RandomResizedCrop {
                size: Size::Square(32),
                scale: [0.4, 1.0],
                ratio: [0.75, 1.33],
            },
            digits_normalize,
        ],
        "digits_eval" => vec![
            Step::Resize {
                size: ResizeTarget::Exact([32, 32]),
            },
            digits_normalize,
        ],
        _ => return None,
    };
    Some(steps)
}

/// A validated pipeline: geometric steps on 8-bit RGB, then colour steps on `f32`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    steps: Vec<Step>,
    colour_start: usize,
    output: (u32, u32),
}

impl Pipeline {
    /// Builds the pipeline of `spec`; `key` names the config key in errors.
    pub fn from_spec(spec: &TransformSpec, key: &str) -> Result<Self, DataError> {
        match spec {
            TransformSpec::Preset(name) => {
                let steps = preset_steps(name).ok_or_else(|| {
                    DataError::config(
                        key,
                        format!(
                            "unknown transform preset {name:?}; the presets are {}",
                            PRESETS.join(", ")
                        ),
                    )
                })?;
                Self::new(steps, key)
            }
            TransformSpec::Steps(steps) => Self::new(steps.clone(), key),
        }
    }

    /// Checks that the steps end in a fixed size and that geometry comes before colour.
    pub fn new(steps: Vec<Step>, key: &str) -> Result<Self, DataError> {
        let colour_start = steps.iter().position(Step::is_colour).unwrap_or(steps.len());
        if let Some(late) = steps[colour_start..].iter().find(|step| !step.is_colour()) {
            return Err(DataError::config(
                key,
                format!(
                    "{} comes after a colour step; put resize, crop and flip steps first",
                    late.name()
                ),
            ));
        }
        let output = steps[..colour_start]
            .iter()
            .rev()
            .find_map(Step::fixed_output)
            .ok_or_else(|| {
                DataError::config(
                    key,
                    "the pipeline does not end in a fixed size; add resize with [h, w], center_crop or \
                     random_resized_crop",
                )
            })?;
        for step in &steps {
            step.validate(key)?;
        }
        Ok(Self {
            steps,
            colour_start,
            output,
        })
    }

    /// Output `(height, width)`.
    pub fn output_size(&self) -> (u32, u32) {
        self.output
    }

    /// Whether any step draws random numbers.
    pub fn is_random(&self) -> bool {
        self.steps.iter().any(Step::is_random)
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Number of leading steps that draw nothing and touch only geometry (e.g. `paper_eval`'s resize):
    /// their output is the same every epoch, so the loader's cache can keep it instead of the decoded image.
    pub fn deterministic_prefix(&self) -> usize {
        self.steps[..self.colour_start]
            .iter()
            .take_while(|step| !step.is_random())
            .count()
    }

    /// Runs the first `steps` steps, which must be deterministic (see [`Pipeline::deterministic_prefix`]).
    pub fn apply_prefix(
        &self,
        image: RgbImage,
        steps: usize,
        resizer: &mut Resizer,
    ) -> Result<RgbImage, DataError> {
        assert!(
            steps <= self.deterministic_prefix(),
            "only deterministic steps can be run ahead"
        );
        // Deterministic steps draw nothing; the generator is only there to satisfy the signature.
        let mut no_draws = ChaCha8Rng::seed_from_u64(0);
        let mut current = image;
        for step in &self.steps[..steps] {
            current = step.apply_geometric(&current, &mut no_draws, resizer)?;
        }
        Ok(current)
    }

    /// Transforms `image` into `out`, a `[3, h, w]` slice, drawing from `rng`.
    pub fn apply(
        &self,
        image: &RgbImage,
        rng: &mut impl Rng,
        resizer: &mut Resizer,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        self.apply_from(0, image, rng, resizer, out)
    }

    /// Transforms `image`, on which the first `first_step` steps have already run, into `out`.
    pub fn apply_from(
        &self,
        first_step: usize,
        image: &RgbImage,
        rng: &mut impl Rng,
        resizer: &mut Resizer,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let (height, width) = self.output;
        assert_eq!(
            out.len(),
            3 * height as usize * width as usize,
            "output slice of the wrong size"
        );
        let mut current = std::borrow::Cow::Borrowed(image);
        for step in &self.steps[first_step.min(self.colour_start)..self.colour_start] {
            current = std::borrow::Cow::Owned(step.apply_geometric(&current, rng, resizer)?);
        }
        let (actual_width, actual_height) = current.dimensions();
        if (actual_height, actual_width) != (height, width) {
            return Err(DataError::config(
                "transforms",
                format!("pipeline produced {actual_height}x{actual_width}, expected {height}x{width}"),
            ));
        }
        to_chw_unit(&current, out);
        let mut chw = ChwImage {
            data: out,
            height: height as usize,
            width: width as usize,
        };
        for step in &self.steps[self.colour_start..] {
            step.apply_colour(&mut chw, rng);
        }
        Ok(())
    }
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Resize { .. } => "resize",
            Step::CenterCrop { .. } => "center_crop",
            Step::RandomResizedCrop { .. } => "random_resized_crop",
            Step::HorizontalFlip { .. } => "horizontal_flip",
            Step::ColorJitter { .. } => "color_jitter",
            Step::RandomGrayscale { .. } => "random_grayscale",
            Step::Normalize { .. } => "normalize",
        }
    }

    fn is_colour(&self) -> bool {
        matches!(
            self,
            Step::ColorJitter { .. } | Step::RandomGrayscale { .. } | Step::Normalize { .. }
        )
    }

    fn is_random(&self) -> bool {
        matches!(
            self,
            Step::RandomResizedCrop { .. }
                | Step::HorizontalFlip { .. }
                | Step::ColorJitter { .. }
                | Step::RandomGrayscale { .. }
        )
    }

    fn fixed_output(&self) -> Option<(u32, u32)> {
        match self {
            Step::Resize {
                size: ResizeTarget::Exact([h, w]),
            } => Some((*h, *w)),
            Step::CenterCrop { size } | Step::RandomResizedCrop { size, .. } => Some(size.height_width()),
            _ => None,
        }
    }

    fn validate(&self, key: &str) -> Result<(), DataError> {
        let bad = |message: String| Err(DataError::config(format!("{key} ({})", self.name()), message));
        let positive = |(h, w): (u32, u32)| h > 0 && w > 0;
        match self {
            Step::Resize { size } => {
                let ok = match size {
                    ResizeTarget::ShorterSide(n) => *n > 0,
                    ResizeTarget::Exact([h, w]) => positive((*h, *w)),
                };
                if !ok {
                    return bad("size must be positive".into());
                }
            }
            Step::CenterCrop { size } if !positive(size.height_width()) => {
                return bad("size must be positive".into());
            }
            Step::RandomResizedCrop { size, scale, ratio } => {
                if !positive(size.height_width()) {
                    return bad("size must be positive".into());
                }
                if !(scale[0] > 0.0 && scale[0] <= scale[1] && scale[1] <= 1.0) {
                    return bad(format!("scale {scale:?} must satisfy 0 < min <= max <= 1"));
                }
                if !(ratio[0] > 0.0 && ratio[0] <= ratio[1] && ratio[1].is_finite()) {
                    return bad(format!("ratio {ratio:?} must satisfy 0 < min <= max"));
                }
            }
            Step::HorizontalFlip { p } | Step::RandomGrayscale { p } if !(0.0..=1.0).contains(p) => {
                return bad(format!("p = {p} must lie in [0, 1]"));
            }
            Step::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                for (name, value) in [
                    ("brightness", brightness),
                    ("contrast", contrast),
                    ("saturation", saturation),
                ] {
                    if !(value.is_finite() && *value >= 0.0) {
                        return bad(format!("{name} = {value} must be a finite number >= 0"));
                    }
                }
                if !(0.0..=0.5).contains(hue) {
                    return bad(format!("hue = {hue} must lie in [0, 0.5]"));
                }
            }
            Step::Normalize { std, .. } if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) => {
                return bad(format!("std {std:?} must be positive"));
            }
            _ => {}
        }
        Ok(())
    }

    fn apply_geometric(
        &self,
        image: &RgbImage,
        rng: &mut impl Rng,
        resizer: &mut Resizer,
    ) -> Result<RgbImage, DataError> {
        let (width, height) = image.dimensions();
        match *self {
            Step::Resize { size } => {
                let (out_h, out_w) = resize_output(size, height, width);
                resize_region(image, Region::whole(height, width), out_h, out_w, resizer)
            }
            Step::CenterCrop { size } => {
                let (crop_h, crop_w) = size.height_width();
                Ok(center_crop(image, crop_h, crop_w))
            }
            Step::RandomResizedCrop { size, scale, ratio } => {
                let region = random_resized_crop_region(height, width, scale, ratio, rng);
                let (out_h, out_w) = size.height_width();
                resize_region(image, region, out_h, out_w, resizer)
            }
            Step::HorizontalFlip { p } => {
                if draw_unit(rng) < p {
                    Ok(image::imageops::flip_horizontal(image))
                } else {
                    Ok(image.clone())
                }
            }
            _ => unreachable!("colour steps run on f32"),
        }
    }

    fn apply_colour(&self, image: &mut ChwImage<'_>, rng: &mut impl Rng) {
        match *self {
            Step::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                let params = JitterParams::draw(brightness, contrast, saturation, hue, rng);
                for op in params.order {
                    match op {
                        0 => params.brightness.map(|f| adjust_brightness(image, f)),
                        1 => params.contrast.map(|f| adjust_contrast(image, f)),
                        2 => params.saturation.map(|f| adjust_saturation(image, f)),
                        _ => params.hue.map(|f| adjust_hue(image, f)),
                    };
                }
            }
            Step::RandomGrayscale { p } => {
                if draw_unit(rng) < p {
                    to_grayscale(image);
                }
            }
            Step::Normalize { mean, std } => normalize(image, mean, std),
            _ => unreachable!("geometric steps run on u8"),
        }
    }
}

/// A crop box in pixels: top, left, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl Region {
    fn whole(height: u32, width: u32) -> Self {
        Self {
            top: 0,
            left: 0,
            height,
            width,
        }
    }
}

/// torchvision's output size for `Resize(size)` on a `height × width` image.
pub fn resize_output(size: ResizeTarget, height: u32, width: u32) -> (u32, u32) {
    match size {
        ResizeTarget::Exact([h, w]) => (h, w),
        ResizeTarget::ShorterSide(short) => {
            // torchvision truncates the long side: int(size * long / short).
            if height <= width {
                let long = (short as u64 * width as u64 / height.max(1) as u64) as u32;
                (short, long.max(1))
            } else {
                let long = (short as u64 * height as u64 / width.max(1) as u64) as u32;
                (long.max(1), short)
            }
        }
    }
}

/// `RandomResizedCrop.get_params`: ten tries at a box of random area and log-uniform aspect ratio, then
/// the central box of the clamped aspect ratio.
pub fn random_resized_crop_region(
    height: u32,
    width: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> Region {
    let area = height as f64 * width as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * draw_uniform(rng, scale[0], scale[1]);
        let aspect = draw_uniform(rng, log_ratio[0], log_ratio[1]).exp();
        // Python's round() rounds half to even.
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if w > 0.0 && h > 0.0 && w <= width as f64 && h <= height as f64 {
            let (h, w) = (h as u32, w as u32);
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Region {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < ratio[0] {
        let w = width;
        (((w as f64) / ratio[0]).round_ties_even() as u32, w)
    } else if in_ratio > ratio[1] {
        let h = height;
        (h, ((h as f64) * ratio[1]).round_ties_even() as u32)
    } else {
        (height, width)
    };
    let (h, w) = (h.clamp(1, height), w.clamp(1, width));
    Region {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// Crops `region` out of `image`, then resizes it to `out_h × out_w` with Pillow's antialiased bilinear
/// filter, as torchvision's `resized_crop` does on a PIL image: pixels outside the region never contribute.
pub fn resize_region(
    image: &RgbImage,
    region: Region,
    out_h: u32,
    out_w: u32,
    resizer: &mut Resizer,
) -> Result<RgbImage, DataError> {
    let (width, height) = image.dimensions();
    let resize_error = |error: String| DataError::image("<resize>", error);
    if region == Region::whole(height, width) && (out_h, out_w) == (height, width) {
        return Ok(image.clone());
    }
    let source = ImageRef::new(width, height, image.as_raw(), PixelType::U8x3)
        .map_err(|error| resize_error(error.to_string()))?;
    let cropped = CroppedImage::new(&source, region.left, region.top, region.width, region.height)
        .map_err(|error| resize_error(error.to_string()))?;
    let mut target = ResizeImage::new(out_w, out_h, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer
        .resize(&cropped, &mut target, &options)
        .map_err(|error| resize_error(error.to_string()))?;
    RgbImage::from_raw(out_w, out_h, target.into_vec())
        .ok_or_else(|| resize_error("resizer returned a buffer of the wrong size".into()))
}

/// `CenterCrop`: offsets rounded half to even as torchvision's `int(round(...))`; along a side where the
/// crop is larger than the image, the image is padded with black, the odd pixel going right or bottom.
pub fn center_crop(image: &RgbImage, crop_h: u32, crop_w: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let offset = |size: u32, crop: u32| -> i64 {
        if crop > size {
            -(((crop - size) / 2) as i64)
        } else {
            ((size - crop) as f64 / 2.0).round_ties_even() as i64
        }
    };
    let (top, left) = (offset(height, crop_h), offset(width, crop_w));
    RgbImage::from_fn(crop_w, crop_h, |x, y| {
        let (sx, sy) = (left + x as i64, top + y as i64);
        if sx >= 0 && sy >= 0 && (sx as u32) < width && (sy as u32) < height {
            *image.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// A `[3, height, width]` view of `f32` pixels.
pub struct ChwImage<'a> {
    /// Planar pixels, red plane first.
    pub data: &'a mut [f32],
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ChwImage<'_> {
    fn planes(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let plane = self.height * self.width;
        let (r, rest) = self.data.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        (r, g, b)
    }
}

/// `ToTensor`: 8-bit HWC to `f32` CHW in [0, 1].
pub fn to_chw_unit(image: &RgbImage, out: &mut [f32]) {
    let plane = (image.width() * image.height()) as usize;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (index, pixel) in image.as_raw().chunks_exact(3).enumerate() {
        r[index] = pixel[0] as f32 / 255.0;
        g[index] = pixel[1] as f32 / 255.0;
        b[index] = pixel[2] as f32 / 255.0;
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.2989 * r + 0.587 * g + 0.114 * b
}

/// `adjust_brightness`: blend with black.
pub fn adjust_brightness(image: &mut ChwImage<'_>, factor: f32) {
    for value in image.data.iter_mut() {
        *value = (*value * factor).clamp(0.0, 1.0);
    }
}

/// `adjust_contrast`: blend with the mean grey level of the whole image.
pub fn adjust_contrast(image: &mut ChwImage<'_>, factor: f32) {
    let (r, g, b) = image.planes();
    let sum: f64 = r
        .iter()
        .zip(g.iter())
        .zip(b.iter())
        .map(|((r, g), b)| luma(*r, *g, *b) as f64)
        .sum();
    let mean = (sum / r.len().max(1) as f64) as f32;
    let offset = (1.0 - factor) * mean;
    for value in image.data.iter_mut() {
        *value = (factor * *value + offset).clamp(0.0, 1.0);
    }
}

/// `adjust_saturation`: blend each pixel with its grey level.
pub fn adjust_saturation(image: &mut ChwImage<'_>, factor: f32) {
    let (r, g, b) = image.planes();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let grey = (1.0 - factor) * luma(*r, *g, *b);
        *r = (factor * *r + grey).clamp(0.0, 1.0);
        *g = (factor * *g + grey).clamp(0.0, 1.0);
        *b = (factor * *b + grey).clamp(0.0, 1.0);
    }
}

/// `adjust_hue`: rotate the hue by `shift` turns in HSV space.
pub fn adjust_hue(image: &mut ChwImage<'_>, shift: f32) {
    let (r, g, b) = image.planes();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (h, s, v) = rgb_to_hsv(*r, *g, *b);
        let h = (h + shift).rem_euclid(1.0);
        (*r, *g, *b) = hsv_to_rgb(h, s, v);
    }
}

/// torchvision's `_rgb2hsv` for one pixel.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    let equal = max == min;
    let saturation = chroma / if equal { 1.0 } else { max };
    let divisor = if equal { 1.0 } else { chroma };
    let rc = (max - r) / divisor;
    let gc = (max - g) / divisor;
    let bc = (max - b) / divisor;
    let hue = if max == r {
        bc - gc
    } else if max == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let hue = (hue / 6.0 + 1.0).rem_euclid(1.0);
    (hue, saturation, max)
}

/// torchvision's `_hsv2rgb` for one pixel.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let sector = (h * 6.0).floor();
    let f = h * 6.0 - sector;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (sector as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// `rgb_to_grayscale(num_output_channels=3)`.
pub fn to_grayscale(image: &mut ChwImage<'_>) {
    let (r, g, b) = image.planes();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let grey = luma(*r, *g, *b);
        (*r, *g, *b) = (grey, grey, grey);
    }
}

/// `Normalize(mean, std)`.
pub fn normalize(image: &mut ChwImage<'_>, mean: [f32; 3], std: [f32; 3]) {
    let plane = image.height * image.width;
    for (channel, values) in image.data.chunks_exact_mut(plane).enumerate() {
        let (m, s) = (mean[channel], std[channel]);
        for value in values {
            *value = (*value - m) / s;
        }
    }
}

/// The factors ColorJitter draws, and the order it applies them in (0 brightness … 3 hue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// Order of the four operations, as `torch.randperm(4)`.
    pub order: [usize; 4],
    /// Brightness factor, if jittered.
    pub brightness: Option<f32>,
    /// Contrast factor, if jittered.
    pub contrast: Option<f32>,
    /// Saturation factor, if jittered.
    pub saturation: Option<f32>,
    /// Hue shift, if jittered.
    pub hue: Option<f32>,
}

impl JitterParams {
    /// Draws the order and the factors as `ColorJitter.get_params`.
    pub fn draw(brightness: f64, contrast: f64, saturation: f64, hue: f64, rng: &mut impl Rng) -> Self {
        let mut order = [0, 1, 2, 3];
        // Fisher–Yates: a uniform permutation, as randperm.
        for i in (1..4).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let mut factor = |spread: f64| {
            (spread > 0.0).then(|| draw_uniform(rng, (1.0 - spread).max(0.0), 1.0 + spread) as f32)
        };
        let brightness = factor(brightness);
        let contrast = factor(contrast);
        let saturation = factor(saturation);
        let hue = (hue > 0.0).then(|| draw_uniform(rng, -hue, hue) as f32);
        Self {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }
}

fn draw_unit(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

fn draw_uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    low + (high - low) * draw_unit(rng)
}

/// The random stream of one sample: a function of (seed, pass, sample index) only, so that batches do not
/// depend on the number of worker threads or on the order in which they run.
pub fn sample_rng(seed: u64, pass: u64, sample: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(pass);
    // 2^36 words per sample is far more than a pipeline draws.
    rng.set_word_pos((sample as u128) << 36);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_is_the_identity() {
        for (r, g, b) in [
            (0.2, 0.5, 0.9),
            (1.0, 0.0, 0.0),
            (0.3, 0.3, 0.3),
            (0.0, 0.7, 0.7),
            (0.9, 0.1, 0.6),
        ] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!(
                (r - r2).abs() < 1e-6 && (g - g2).abs() < 1e-6 && (b - b2).abs() < 1e-6,
                "{r} {g} {b}"
            );
        }
        // A full turn of hue changes nothing; half a turn of pure red is cyan.
        assert_eq!(hsv_to_rgb(0.5, 1.0, 1.0), (0.0, 1.0, 1.0));
    }

    #[test]
    fn shorter_side_resize_truncates_the_long_side() {
        // torchvision: int(20 * 53 / 37) = 28.
        assert_eq!(resize_output(ResizeTarget::ShorterSide(20), 37, 53), (20, 28));
        assert_eq!(resize_output(ResizeTarget::ShorterSide(20), 53, 37), (28, 20));
        assert_eq!(resize_output(ResizeTarget::Exact([7, 9]), 53, 37), (7, 9));
    }

    #[test]
    fn invalid_pipelines_name_the_key_and_the_fix() {
        let normalize = Step::Normalize {
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let flip = Step::HorizontalFlip { p: 0.5 };
        let crop = Step::CenterCrop {
            size: Size::Square(8),
        };
        let error = Pipeline::new(
            vec![crop.clone(), normalize.clone(), flip.clone()],
            "data.transforms.train",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("data.transforms.train") && error.contains("horizontal_flip comes after"),
            "{error}"
        );
        let error = Pipeline::new(vec![flip, normalize], "k").unwrap_err().to_string();
        assert!(error.contains("fixed size"), "{error}");
        let jitter = Step::ColorJitter {
            brightness: 0.2,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.7,
        };
        let error = Pipeline::new(vec![crop, jitter], "k").unwrap_err().to_string();
        assert!(error.contains("hue = 0.7"), "{error}");
        let error = Pipeline::from_spec(&TransformSpec::Preset("paper".into()), "k")
            .unwrap_err()
            .to_string();
        assert!(error.contains("paper_train"), "{error}");
    }

    #[test]
    fn jitter_draws_stay_in_their_ranges_and_permute_all_four() {
        let mut rng = sample_rng(0, 0, 0);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..500 {
            let params = JitterParams::draw(0.3, 0.3, 0.3, 0.3, &mut rng);
            let mut sorted = params.order;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            orders.insert(params.order);
            for factor in [params.brightness, params.contrast, params.saturation] {
                assert!((0.7..=1.3).contains(&factor.unwrap()));
            }
            assert!((-0.3..=0.3).contains(&params.hue.unwrap()));
        }
        assert_eq!(orders.len(), 24, "every order of the four operations occurs");
        assert_eq!(JitterParams::draw(0.0, 0.0, 0.0, 0.0, &mut rng).brightness, None);
    }
}
