//! `ftcal calibrate`: metrics and post-hoc calibration of saved logits.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ftcal_eval::{
    CalibrationReport, ClassSplit, MeasuredFold, PcvFoldSplit, PlotMark, Scores, TopK, calibrate, curve_csv,
    parse_class_list, parse_class_list_lines, plot_seen_unseen, read_scores, summary_table, write_atomic,
};

/// Arguments of `ftcal calibrate`.
#[derive(Args, Debug)]
#[command(
    after_help = "Scores files are .safetensors or .npz holding `logits` [N, C] (float), `labels` [N] \
(integer) and optionally `features` [N, D]. From PyTorch: \
safetensors.torch.save_file({\"logits\": z, \"labels\": y.long(), \"features\": f}, \"test.safetensors\"); \
from NumPy: numpy.savez(\"test.npz\", logits=z, labels=y)."
)]
pub struct CalibrateArgs {
    /// Scores of the training split: ALG is computed on its samples of S; its features, when present,
    /// give the NCM class means.
    #[arg(long, value_name = "FILE")]
    train: PathBuf,

    /// Scores of the test split, every class: the metrics, the seen–unseen curve and the oracle γ*.
    #[arg(long, value_name = "FILE")]
    test: PathBuf,

    /// The absent classes U: `5,6,7-9`, or `@FILE` with one class or range a line.
    #[arg(long, value_name = "LIST")]
    absent: String,

    /// The fine-tuning classes S (default: every class not in U). Classes in neither stay candidates of
    /// the overall prediction unless --exclude-outside.
    #[arg(long, value_name = "LIST")]
    fine_tuning: Option<String>,

    /// Predict among S ∪ U only (e.g. ImageNet-R's 200 classes of a 1000-way head).
    #[arg(long)]
    exclude_outside: bool,

    /// A PCV fold: the scores of a model fine-tuned on part of S, on the training split, and the classes of
    /// S it was not fine-tuned on (`FILE:LIST`). Without `:LIST`, the `split.json` beside FILE (as in a
    /// run's `outputs/pcv/<k>/`). Repeat for each fold; needs --pretrained-train.
    #[arg(long = "pcv-fold", value_name = "FILE[:LIST]", requires = "pretrained_train")]
    pcv_folds: Vec<String>,

    /// Scores of the pre-trained model on the training split: PCV's constraint (each fold keeps the
    /// pre-trained model's accuracy on its pseudo-absent classes).
    #[arg(long, value_name = "FILE", requires = "pcv_folds")]
    pretrained_train: Option<PathBuf>,

    /// Write the results as JSON, in the shape of a run's summary.json.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write the top-1 table as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,

    /// Write the seen–unseen curve's points (γ intervals and accuracies) as CSV.
    #[arg(long, value_name = "FILE")]
    curve: Option<PathBuf>,

    /// Draw the seen–unseen curve, with γ = 0, ALG and the oracle marked, as a PNG.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// Runs `ftcal calibrate`.
pub fn run(args: &CalibrateArgs) -> Result<()> {
    let train = read_scores(&args.train)?;
    let test = read_scores(&args.test)?;
    let num_classes = test.num_classes();
    let absent = class_list(&args.absent, "--absent")?;
    let split = match &args.fine_tuning {
        Some(list) => ClassSplit::new(num_classes, &class_list(list, "--fine-tuning")?, &absent),
        None => ClassSplit::from_absent(num_classes, &absent),
    }
    .context("invalid class split (--absent / --fine-tuning)")?;
    let split = if args.exclude_outside {
        split.exclude_outside()
    } else {
        split
    };
    let mut report = calibrate(&train, &test, &split)?;
    if let Some(pretrained) = &args.pretrained_train {
        let folds = pcv_folds(&args.pcv_folds, &read_scores(pretrained)?, &split)?;
        report = report.with_pcv(&folds)?;
    }

    println!("{}", describe(&train, &test, &split, &report));
    let summary = report.summary();
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).context("serialising the summary")?;
        write_atomic(path, format!("{json}\n").as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        write_atomic(path, summary_table(&summary, TopK::Top1).to_csv().as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.curve {
        write_atomic(path, curve_csv(report.test.curve()).as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot(&report, path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Measures each `--pcv-fold FILE[:LIST]` against the pre-trained model's training scores.
fn pcv_folds(
    arguments: &[String],
    pretrained_train: &Scores,
    split: &ClassSplit,
) -> Result<Vec<MeasuredFold>> {
    let mut folds = Vec::with_capacity(arguments.len());
    for argument in arguments {
        // The class list never holds a ':', a path may.
        let (file, fold) = match argument.rsplit_once(':') {
            Some((file, list)) if !Path::new(argument).exists() => {
                let pseudo_absent = class_list(list, "--pcv-fold")?;
                let fold = PcvFoldSplit::with_pseudo_absent(split, &pseudo_absent)
                    .with_context(|| format!("--pcv-fold {argument}"))?;
                (PathBuf::from(file), fold)
            }
            _ => {
                let file = PathBuf::from(argument);
                let saved = file.with_file_name("split.json");
                let text = std::fs::read_to_string(&saved).with_context(|| {
                    format!(
                        "--pcv-fold {argument}: no class list given and cannot read {}; write FILE:LIST with the fold's pseudo-absent classes",
                        saved.display()
                    )
                })?;
                let fold: PcvFoldSplit = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a PCV fold's split", saved.display()))?;
                let fold = PcvFoldSplit::with_pseudo_absent(split, &fold.pseudo_absent)
                    .with_context(|| format!("{}", saved.display()))?;
                (file, fold)
            }
        };
        let scores = read_scores(&file)?;
        folds.push(
            MeasuredFold::new(fold, &scores, pretrained_train, split)
                .with_context(|| format!("--pcv-fold {argument}"))?,
        );
    }
    Ok(folds)
}

fn class_list(argument: &str, flag: &str) -> Result<Vec<usize>> {
    match argument.strip_prefix('@') {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("{flag}: cannot read {file}"))?;
            Ok(parse_class_list_lines(&text, file)?)
        }
        None => Ok(parse_class_list(argument, flag)?),
    }
}

fn describe(train: &Scores, test: &Scores, split: &ClassSplit, report: &CalibrationReport) -> String {
    let count = |scores: &Scores, group| {
        scores
            .labels()
            .iter()
            .filter(|&&y| split.group(y as usize) == group)
            .count()
    };
    let samples = |scores: &Scores| {
        format!(
            "{} samples ({} of S, {} of U)",
            scores.len(),
            count(scores, ftcal_eval::Group::FineTuning),
            count(scores, ftcal_eval::Group::Absent)
        )
    };
    let mut out = String::new();
    out.push_str(&format!("train: {}: {}\n", train.origin(), samples(train)));
    out.push_str(&format!("test:  {}: {}\n", test.origin(), samples(test)));
    out.push_str(&format!(
        "classes: {} logits; |S| = {}, |U| = {}",
        split.num_classes(),
        split.fine_tuning().len(),
        split.absent().len()
    ));
    if split.num_outside() > 0 {
        let role = if split.outside_compete() {
            "still predicted"
        } else {
            "excluded from Y"
        };
        out.push_str(&format!(", {} outside both ({role})", split.num_outside()));
    }
    out.push_str(&format!(
        "\nγ: ALG = {:.4} (training samples of S); ",
        report.alg.gamma
    ));
    if let Some(pcv) = &report.pcv {
        out.push_str(&format!("PCV = {:.4} (folds on S); ", pcv.gamma));
    }
    out.push_str(&format!(
        "oracle γ* = {:.4} (best Acc_Y/Y on the test curve: an upper bound, not a method)\n\n",
        report.oracle.gamma
    ));
    let summary = report.summary();
    out.push_str("Top-1 accuracy (%) and AUSUC on the test split\n\n");
    out.push_str(&summary_table(&summary, TopK::Top1).to_markdown());
    out.push_str("\nTop-5 accuracy (%)\n\n");
    out.push_str(&summary_table(&summary, TopK::Top5).to_markdown());
    let mut notes = Vec::new();
    if report.test.metrics().ncm.is_none() {
        notes.push("NCM: not run; it needs `features` in both --train and --test.".to_owned());
    }
    let empty = report.test.ncm_classes_without_samples();
    if !empty.is_empty() {
        notes.push(format!(
            "NCM: {} classes have no training sample and can never be predicted by the probe: {}",
            empty.len(),
            abbreviate(empty)
        ));
    }
    if report.test.metrics().ausuc.is_none() {
        notes.push("AUSUC: undefined; the test split needs samples of both S and U.".to_owned());
    }
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&format!("note: {note}\n"));
        }
    }
    out
}

fn abbreviate(classes: &[usize]) -> String {
    const SHOWN: usize = 20;
    let mut text = classes
        .iter()
        .take(SHOWN)
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if classes.len() > SHOWN {
        text.push_str(&format!(", … ({} more)", classes.len() - SHOWN));
    }
    text
}

fn plot(report: &CalibrationReport, path: &Path) -> Result<()> {
    let metrics = report.test.metrics();
    let mut marks = Vec::new();
    let mut mark = |label: String, acc: &ftcal_eval::AccuracyPercent| {
        if let (Some(s_y), Some(u_y)) = (acc.s_y, acc.u_y) {
            marks.push(PlotMark { label, s_y, u_y });
        }
    };
    mark("γ = 0 (fine-tuned)".into(), &metrics.acc);
    mark(format!("ALG, γ = {:.3}", report.alg.gamma), &report.alg.acc);
    if let Some(pcv) = &report.pcv {
        mark(format!("PCV, γ = {:.3}", pcv.gamma), &pcv.acc);
    }
    mark(
        format!("oracle γ* = {:.3}", report.oracle.gamma),
        &report.oracle.acc,
    );
    let title = match metrics.ausuc {
        Some(ausuc) => format!("Seen–unseen curve, AUSUC = {ausuc:.4}"),
        None => "Seen–unseen curve".to_owned(),
    };
    plot_seen_unseen(report.test.curve(), &marks, &title, path)?;
    Ok(())
}
