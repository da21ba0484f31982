//! Each dataset layout on a small tree made in a temporary folder, and `check` finding each problem.

use std::fs;
use std::path::{Path, PathBuf};

use ftcal_data::check::check;
use ftcal_data::{DataConfig, ProblemKind};
use image::{ImageFormat, RgbImage};
use serde::Deserialize as _;

fn write_image(path: &Path, format: ImageFormat, seed: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = RgbImage::from_fn(24, 18, |x, y| {
        image::Rgb([
            (x * 10 + seed) as u8,
            (y * 12 + seed * 3) as u8,
            ((x + y) * 5) as u8,
        ])
    });
    image.save_with_format(path, format).unwrap();
}

fn parse(text: &str) -> DataConfig {
    let table: toml::Table = toml::from_str(text).unwrap();
    table["data"].clone().try_into().unwrap()
}

fn toml_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "/")
}

fn kinds(report: &ftcal_data::check::CheckReport) -> Vec<(ProblemKind, PathBuf, Option<usize>)> {
    report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone(), p.line))
        .collect()
}

/// Office-Home-like: `Real World` with a space, `.JPEG` and `.jpg`, a PNG named `.jpg`, a truncated JPEG
/// and an empty class folder; the split into train and test is the seeded per-class rule.
#[test]
fn office_home_like_folder_tree() {
    let dir = tempfile::tempdir().unwrap();
    let domain = dir.path().join("Real World");
    // Office-Home labels: Drill = 0, Exit_Sign = 1, Bottle = 2, Glasses = 3, Computer = 4, Marker = 64.
    for (class, count) in [("Drill", 6), ("Exit_Sign", 3), ("Bottle", 5), ("Marker", 3)] {
        for index in 0..count {
            let extension = if index % 2 == 0 { "jpg" } else { "JPEG" };
            write_image(
                &domain.join(class).join(format!("{index:05}.{extension}")),
                ImageFormat::Jpeg,
                index,
            );
        }
    }
    // A PNG with a .jpg name decodes (the format comes from the bytes).
    write_image(&domain.join("Glasses/00001.jpg"), ImageFormat::Png, 7);
    write_image(&domain.join("Glasses/00002.jpg"), ImageFormat::Png, 8);
    // A truncated JPEG.
    let good = fs::read(domain.join("Drill/00000.jpg")).unwrap();
    fs::write(domain.join("Drill/00099.jpg"), &good[..good.len() / 3]).unwrap();
    // An empty class and a file that is not an image.
    fs::create_dir_all(domain.join("Computer")).unwrap();
    fs::write(domain.join("Bottle/Thumbs.db"), b"not an image").unwrap();

    let config = parse(&format!(
        r#"
        [data.target]
        kind = "image_folder"
        root = "{}"
        domain = "Real_World"
        class_order = "office_home"
        [data.classes]
        fine_tuning = [0, 1, 2]
        absent = [3, 64]
        [data.transforms]
        train = "digits_train"
        eval = "digits_eval"
        "#,
        toml_path(dir.path())
    ));
    let report = check(&config, "data", 2, &|_, _| {}).unwrap();
    let data = &report.data;
    assert_eq!(data.target.num_classes, 65);
    let train = &report.splits[0];
    let test = &report.splits[1];
    // Drill: 7 files (one truncated), 7:3 per class → round(4.9) = 5 listed for training, 2 for test.
    assert_eq!(
        train.per_class[0] + test.per_class[0],
        6,
        "the truncated JPEG is not counted"
    );
    assert_eq!(data.target.train.class_counts()[0], 5);
    assert_eq!(data.target.test.class_counts()[0], 2);
    assert_eq!(
        train.per_class[2] + test.per_class[2],
        5,
        "Thumbs.db is not an image"
    );
    assert_eq!(
        train.per_class[3] + test.per_class[3],
        2,
        "PNG bytes under a .jpg name decode"
    );
    assert_eq!(train.per_class[64] + test.per_class[64], 3);
    // The fine-tuning training set holds S only.
    assert!(
        data.fine_tuning_train
            .samples
            .iter()
            .all(|s| [0, 1, 2].contains(&s.label))
    );

    let problems = kinds(&report);
    assert!(
        problems.contains(&(ProblemKind::CorruptImage, domain.join("Drill/00099.jpg"), None)),
        "{problems:?}"
    );
    assert!(
        problems.contains(&(ProblemKind::EmptyClass, domain.join("Computer"), None)),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 2, "{}", report.to_text());
    let text = report.to_text();
    assert!(text.contains("fine-tuning classes S (3): 0-2"), "{text}");
    assert!(text.contains("absent classes U (2): 3, 64"), "{text}");
}

/// ImageNet-style WordNet-id folders read through a list file with ImageNet-1k labels; every kind of bad
/// line is reported with its line number.
#[test]
fn imagenet_style_list_with_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // n01443537 is ImageNet-1k class 1, n01484850 class 2.
    write_image(&root.join("imagenet-r/n01443537/art_1.jpg"), ImageFormat::Jpeg, 1);
    write_image(&root.join("imagenet-r/n01443537/art 2.jpg"), ImageFormat::Jpeg, 2);
    write_image(&root.join("imagenet-r/n01484850/toy_1.jpg"), ImageFormat::Jpeg, 3);
    write_image(&dir.path().join("secret.jpg"), ImageFormat::Jpeg, 4);
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        dir.path().join("secret.jpg"),
        root.join("imagenet-r/n01484850/link.jpg"),
    )
    .unwrap();
    let train = dir.path().join("train.txt");
    let mut lines = vec![
        "imagenet-r/n01443537/art_1.jpg 1",
        "imagenet-r/n01443537/art 2.jpg 1",
        "imagenet-r/n01484850/toy_1.jpg 2",
        "imagenet-r/n01484850/toy_1.jpg 2",
        "imagenet-r/n01484850/missing.jpg 2",
        "imagenet-r/n01484850/toy_1.jpg",
        "imagenet-r/n01484850/toy_1.jpg two",
        "imagenet-r/n01484850/toy_1.jpg 1000",
        "../secret.jpg 2",
        "/etc/passwd 2",
    ];
    if cfg!(unix) {
        lines.push("imagenet-r/n01484850/link.jpg 2");
    }
    fs::write(&train, lines.join("\n")).unwrap();
    let test = dir.path().join("test.txt");
    fs::write(
        &test,
        "imagenet-r/n01443537/art_1.jpg 1\nimagenet-r/n01484850/toy_1.jpg 2\n",
    )
    .unwrap();

    let config = parse(&format!(
        r#"
        [data.target]
        kind = "image_list"
        root = "{}"
        train = "{}"
        test = "{}"
        class_names = "imagenet"
        [data.classes]
        fine_tuning = [1]
        absent = [2]
        "#,
        toml_path(&root),
        toml_path(&train),
        toml_path(&test)
    ));
    let report = check(&config, "data", 1, &|_, _| {}).unwrap();
    assert_eq!(report.data.target.num_classes, 1000);
    assert_eq!(report.data.target.class_names.as_ref().unwrap()[1], "n01443537");
    let by_line: Vec<(usize, ProblemKind)> = report
        .problems
        .iter()
        .filter_map(|p| p.line.map(|line| (line, p.kind)))
        .collect();
    let mut expected = vec![
        (4, ProblemKind::DuplicatePath),
        (5, ProblemKind::MissingFile),
        (6, ProblemKind::MalformedLine),
        (7, ProblemKind::MalformedLine),
        (8, ProblemKind::LabelOutOfRange),
        (9, ProblemKind::OutsideRoot),
        (10, ProblemKind::OutsideRoot),
    ];
    if cfg!(unix) {
        expected.push((11, ProblemKind::OutsideRoot));
    }
    assert_eq!(by_line, expected, "{}", report.to_text());
    // The path with a space is one entry, labelled by the last token.
    assert_eq!(report.splits[0].per_class[1], 2);
    // Training refuses the dataset with the first fatal line.
    let error = report.data.first_error(false).unwrap().to_string();
    assert!(
        error.contains("train.txt:5") && error.contains("missing"),
        "{error}"
    );

    // The same list is accepted with allow_outside_root, apart from the lines that are wrong anyway.
    let mut config = config;
    if let ftcal_data::DatasetConfig::ImageList(list) = &mut config.target {
        list.allow_outside_root = true;
    }
    let report = check(&config, "data", 1, &|_, _| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind != ProblemKind::OutsideRoot || p.line == Some(10))
    );
}

/// The common VTAB-1k layout; an unknown task name is an error with the nearest valid one.
#[test]
fn vtab1k_layout() {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("eurosat");
    let mut train = String::new();
    for index in 0..20 {
        write_image(
            &task.join(format!("images/{index:06}.jpg")),
            ImageFormat::Jpeg,
            index,
        );
        train.push_str(&format!("images/{index:06}.jpg {}\n", index % 10));
    }
    fs::write(task.join("train800val200.txt"), &train).unwrap();
    fs::write(task.join("test.txt"), &train).unwrap();
    let text = |task: &str| {
        format!(
            r#"
            [data.target]
            kind = "vtab1k"
            root = "{}"
            task = "{task}"
            [data.classes]
            preset = "vtab.eurosat"
            "#,
            toml_path(dir.path())
        )
    };
    let report = check(&parse(&text("eurosat")), "data", 2, &|_, _| {}).unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.splits[0].per_class, vec![2; 10]);
    // The reference order for EuroSAT starts 3, 8, 7, 2, 1: the first half is S.
    assert_eq!(report.data.split.fine_tuning(), &[1, 2, 3, 7, 8]);
    let error = check(&parse(&text("euro_sat")), "data", 1, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("data.target.task") && error.contains("did you mean \"eurosat\""),
        "{error}"
    );
}

/// Digits-2 decodes from the embedded files: 500 MNIST digits and the UCI counts of optdigits per class,
/// split 7:3 per class.
#[test]
fn digits2_domains() {
    let config = parse(
        r#"
        [data.source]
        kind = "digits2"
        domain = "mnist"
        [data.target]
        kind = "digits2"
        domain = "optdigits"
        [data.classes]
        fine_tuning = [0, 1, 2, 3, 4]
        "#,
    );
    let data = config.open("data").unwrap();
    let source = data.source.as_ref().unwrap();
    assert_eq!(source.train.class_counts(), vec![350; 10]);
    assert_eq!(source.test.class_counts(), vec![150; 10]);
    let optdigits_per_class = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
    let train = data.target.train.class_counts();
    let test = data.target.test.class_counts();
    for class in 0..10 {
        let n = optdigits_per_class[class] as f64;
        assert_eq!(train[class], (0.7 * n).round() as usize, "class {class}");
        assert_eq!(
            train[class] + test[class],
            optdigits_per_class[class],
            "class {class}"
        );
    }
    assert_eq!(data.split.absent(), &[5, 6, 7, 8, 9]);
    assert_eq!(data.fine_tuning_train.len(), train[..5].iter().sum::<usize>());
    // Images decode at their native sizes, grey replicated to three channels.
    let mnist = source.train.load(0).unwrap();
    assert_eq!(mnist.dimensions(), (20, 20));
    let optdigit = data.target.train.load(0).unwrap();
    assert_eq!(optdigit.dimensions(), (8, 8));
    assert!(optdigit.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(optdigit.pixels().any(|p| p[0] == 255) && optdigit.pixels().any(|p| p[0] == 0));
}

/// A PNG whose header claims 100,000 × 100,000 pixels is refused before anything is allocated.
#[test]
fn decompression_bomb_is_refused() {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |kind: &[u8], data: &[u8], out: &mut Vec<u8>| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend(100_000u32.to_be_bytes());
    header.extend(100_000u32.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header, &mut png);
    chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        &mut png,
    );
    chunk(b"IEND", &[], &mut png);
    let error = ftcal_data::decode::decode_bytes(&png, Path::new("bomb.png"))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("bomb.png") && error.contains("decompression bomb"),
        "{error}"
    );
}

/// Config errors name the key.
#[test]
fn config_errors_name_the_key() {
    let table: toml::Table = toml::from_str(
        r#"
        [data.target]
        kind = "digits2"
        domain = "mnist"
        colour = true
        [data.classes]
        fine_tuning = [0]
        "#,
    )
    .unwrap();
    let error = DataConfig::deserialize(table["data"].clone())
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `colour`"), "{error}");

    let config = parse(
        r#"
        [data.target]
        kind = "digits2"
        domain = "svhn"
        [data.classes]
        fine_tuning = [0]
        "#,
    );
    let error = config.open("data").unwrap_err().to_string();
    assert!(
        error.starts_with("data.target.domain:") && error.contains("mnist, optdigits"),
        "{error}"
    );

    for (classes, key, words) in [
        (
            "fine_tuning = [0, 1]\nabsent = [1, 2]",
            "data.classes.fine_tuning",
            "both",
        ),
        (
            "fine_tuning = [0, 12]",
            "data.classes.fine_tuning",
            "out of range",
        ),
        (
            "fine_tuning = 11",
            "data.classes.fine_tuning",
            "S needs 1 to 10 classes",
        ),
        ("preset = \"imagenet_r\"", "data.classes.preset", "1000 classes"),
        (
            "preset = \"office_home.source_art\"\nfine_tuning = [1]",
            "data.classes.preset",
            "remove",
        ),
        (
            "preset = \"office_home.art\"",
            "data.classes.preset",
            "office_home.source_art",
        ),
    ] {
        let config = parse(&format!(
            "[data.target]\nkind = \"digits2\"\ndomain = \"mnist\"\n[data.classes]\n{classes}\n"
        ));
        let error = config.open("data").unwrap_err().to_string();
        assert!(
            error.starts_with(key) && error.contains(words),
            "{classes}: {error}"
        );
    }
    // Every class in S (U empty) is a valid split: the all-classes run.
    for classes in ["absent = []", "fine_tuning = 10"] {
        let config = parse(&format!(
            "[data.target]\nkind = \"digits2\"\ndomain = \"mnist\"\n[data.classes]\n{classes}\n"
        ));
        let data = config.open("data").unwrap_or_else(|e| panic!("{classes}: {e}"));
        assert!(
            data.split.absent().is_empty() && data.split.fine_tuning().len() == 10,
            "{classes}"
        );
    }
}

/// A random S of a given size is reproducible from its seed and leaves the rest to U.
#[test]
fn random_class_split() {
    let split = |seed: u64| {
        parse(&format!(
            "[data.target]\nkind = \"digits2\"\ndomain = \"mnist\"\n[data.classes]\nfine_tuning = 4\nseed = {seed}\n"
        ))
        .open("data")
        .unwrap()
        .split
    };
    let (a, b, c) = (split(3), split(3), split(4));
    assert_eq!(a, b);
    assert_ne!(a.fine_tuning(), c.fine_tuning());
    assert_eq!(a.fine_tuning().len(), 4);
    assert_eq!(a.absent().len(), 6);
}

/// The lists say `Real_World/…`; Office-Home's zip unpacks `Real World/…`. The list still resolves.
#[test]
fn list_paths_find_the_real_world_folder_with_a_space() {
    let dir = tempfile::tempdir().unwrap();
    write_image(
        &dir.path().join("Real World/Drill/00001.jpg"),
        ImageFormat::Jpeg,
        1,
    );
    write_image(
        &dir.path().join("Real World/Bottle/00001.jpg"),
        ImageFormat::Jpeg,
        2,
    );
    let list = dir.path().join("list.txt");
    fs::write(
        &list,
        "Real_World/Drill/00001.jpg 0\nReal_World/Bottle/00001.jpg 2\n",
    )
    .unwrap();
    let config = parse(&format!(
        "[data.target]\nkind = \"image_list\"\nroot = \"{0}\"\ntrain = \"{1}\"\ntest = \"{1}\"\nclass_names = \"office_home\"\n\
         [data.classes]\npreset = \"office_home.source_art\"\n",
        toml_path(dir.path()),
        toml_path(&list)
    ));
    let data = config.open("data").unwrap();
    assert!(data.target.problems.is_empty(), "{:?}", data.target.problems);
    assert_eq!(data.target.train.labels(), vec![0, 2]);
    assert_eq!(data.target.train.load(1).unwrap().dimensions(), (24, 18));
}
