//! The arithmetic the update rules are written in, for two kinds of operand: whole tensors (burn's ops,
//! on any backend), and blocks of a parameter's values on the host (ftcal-kernels' in-place step on
//! flex). Each operation rounds to `f32` exactly as burn's does (a scalar is cast to `f32` first, then
//! one IEEE operation per element), so a rule gives bit-identical results on either.

use std::ops::{Add, Div, Mul, Sub};

use burn::tensor::Tensor;

/// Values a rule computes with: elementwise `+ − × ÷` between two of them, and these scalar operations.
pub(super) trait Elementwise:
    Sized + Clone + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// `self · scalar`.
    fn mul_scalar(self, scalar: f64) -> Self;
    /// `self / scalar`.
    fn div_scalar(self, scalar: f64) -> Self;
    /// `self + scalar`.
    fn add_scalar(self, scalar: f64) -> Self;
    /// The square root of each element.
    fn sqrt(self) -> Self;
    /// Every element `value`, in `self`'s shape.
    fn full_like(&self, value: f64) -> Self;

    /// Zeros in `self`'s shape.
    fn zeros_like(&self) -> Self {
        self.full_like(0.0)
    }
}

impl Elementwise for Tensor<1> {
    fn mul_scalar(self, scalar: f64) -> Self {
        Tensor::mul_scalar(self, scalar)
    }

    fn div_scalar(self, scalar: f64) -> Self {
        Tensor::div_scalar(self, scalar)
    }

    fn add_scalar(self, scalar: f64) -> Self {
        Tensor::add_scalar(self, scalar)
    }

    fn sqrt(self) -> Self {
        Tensor::sqrt(self)
    }

    fn full_like(&self, value: f64) -> Self {
        Tensor::full_like(self, value)
    }
}

/// A block of consecutive elements of a flat parameter, gradient or buffer, computed on the host. Each
/// operation reuses its left operand's allocation.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Block(pub(super) Vec<f32>);

impl Block {
    /// `self` with `operation(element, other's element)` applied in place.
    fn zip_with(mut self, other: &Block, operation: impl Fn(f32, f32) -> f32) -> Self {
        debug_assert_eq!(self.0.len(), other.0.len(), "blocks of one step have one length");
        for (value, other) in self.0.iter_mut().zip(&other.0) {
            *value = operation(*value, *other);
        }
        self
    }

    /// `self` with `operation(element)` applied in place.
    fn map(mut self, operation: impl Fn(f32) -> f32) -> Self {
        for value in &mut self.0 {
            *value = operation(*value);
        }
        self
    }
}

impl Add for Block {
    type Output = Block;
    fn add(self, other: Block) -> Block {
        self.zip_with(&other, |a, b| a + b)
    }
}

impl Sub for Block {
    type Output = Block;
    fn sub(self, other: Block) -> Block {
        self.zip_with(&other, |a, b| a - b)
    }
}

impl Mul for Block {
    type Output = Block;
    fn mul(self, other: Block) -> Block {
        self.zip_with(&other, |a, b| a * b)
    }
}

impl Div for Block {
    type Output = Block;
    fn div(self, other: Block) -> Block {
        self.zip_with(&other, |a, b| a / b)
    }
}

impl Elementwise for Block {
    fn mul_scalar(self, scalar: f64) -> Self {
        let scalar = scalar as f32;
        self.map(|value| value * scalar)
    }

    fn div_scalar(self, scalar: f64) -> Self {
        let scalar = scalar as f32;
        self.map(|value| value / scalar)
    }

    fn add_scalar(self, scalar: f64) -> Self {
        let scalar = scalar as f32;
        self.map(|value| value + scalar)
    }

    fn sqrt(self) -> Self {
        self.map(f32::sqrt)
    }

    fn full_like(&self, value: f64) -> Self {
        Block(vec![value as f32; self.0.len()])
    }
}
