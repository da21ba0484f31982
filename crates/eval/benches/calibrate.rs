//! `cargo bench -p ftcal-eval`: the full `ftcal calibrate` computation (top-1 and top-5 tables at γ = 0,
//! ALG and oracle, the exact seen–unseen curve and AUSUC) on random logits of ImageNet-Sketch's test size
//! (10,000 × 1,000) and five times that, with half the classes absent. Single-threaded by construction.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ftcal_eval::{ClassSplit, Matrix, Scores, calibrate};

const CLASSES: usize = 1000;

/// xorshift64*: reproducible random numbers without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn random_scores(rows: usize, seed: u64, split: &ClassSplit) -> Scores {
    let mut random = Random(seed);
    let labels: Vec<i64> = (0..rows)
        .map(|_| (random.next() % CLASSES as u64) as i64)
        .collect();
    let mut logits = Vec::with_capacity(rows * CLASSES);
    for &label in &labels {
        for class in 0..CLASSES {
            // Fine-tuned-like: S logits inflated, the label's logit raised.
            let mut z = 4.0 * random.unit();
            if split.group(class) == ftcal_eval::Group::FineTuning {
                z += 1.0;
            }
            if class == label as usize {
                z += 2.0;
            }
            logits.push(z);
        }
    }
    let logits = Matrix::new(rows, CLASSES, logits).expect("rows × classes");
    Scores::new("bench", logits, &labels, None).expect("valid random scores")
}

fn bench_calibrate(c: &mut Criterion) {
    let absent: Vec<usize> = (CLASSES / 2..CLASSES).collect();
    let split = ClassSplit::from_absent(CLASSES, &absent).expect("valid split");
    let mut group = c.benchmark_group("calibrate");
    group.sample_size(10);
    for rows in [10_000, 50_000] {
        let train = random_scores(rows, 1, &split);
        let test = random_scores(rows, 2, &split);
        group.bench_with_input(
            BenchmarkId::new("train+test", format!("{rows}x{CLASSES}")),
            &rows,
            |b, _| b.iter(|| calibrate(&train, &test, &split).expect("calibrates")),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_calibrate);
criterion_main!(benches);
