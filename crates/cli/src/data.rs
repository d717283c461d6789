//! Data sets: the embedded handwritten digits and user CSV files, and the seeded split.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::Array2;

/// The handwritten digits (UCI, CC BY 4.0) as scikit-learn ships them: 1,797 rows of 64
/// pixels in 0..16 and the class 0–9 in the last column, no header.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Pixels of the embedded digits are integers in 0..=16; dividing by this maps them to [0, 1].
pub(crate) const DIGITS_SCALE: f64 = 16.0;

/// A classification data set: one row of features per sample and an integer class.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    /// `[samples, features]`, already scaled.
    pub(crate) features: Array2<f32>,
    /// The class of each sample, in `0..num_classes`.
    pub(crate) labels: Vec<usize>,
    /// One more than the largest class.
    pub(crate) num_classes: usize,
    /// Where the data came from, for messages.
    pub(crate) source: String,
}

impl Dataset {
    /// The number of samples.
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// The number of features per sample.
    pub(crate) fn num_features(&self) -> usize {
        self.features.ncols()
    }

    /// The rows `indices`, in that order, as a new data set.
    pub(crate) fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(ndarray::Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            source: self.source.clone(),
        }
    }
}

/// The embedded digits, pixels divided by `scale`.
pub(crate) fn digits(scale: f64) -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .context("cannot decompress the embedded digits data")?;
    let table = parse_csv(&text, false, "the embedded digits")?;
    let target = table.columns - 1;
    to_dataset(
        table,
        target,
        scale,
        "the embedded handwritten digits".into(),
    )
}

/// A CSV file with a header row; `target_column` names the integer class column (the last
/// column if `None`). Every other column must be numeric; features are divided by `scale`.
pub(crate) fn csv_file(path: &Path, target_column: Option<&str>, scale: f64) -> Result<Dataset> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read data file {}", path.display()))?;
    let source = path.display().to_string();
    let table = parse_csv(&text, true, &source)?;
    let target = match target_column {
        None => table.columns - 1,
        Some(name) => table
            .header
            .iter()
            .position(|h| h == name)
            .with_context(|| {
                format!(
                    "{source} has no column named `{name}` (its columns are: {})",
                    table.header.join(", ")
                )
            })?,
    };
    to_dataset(table, target, scale, source)
}

struct Table {
    header: Vec<String>,
    columns: usize,
    /// Row-major cells, `columns` per row, with the 1-based line number of each row.
    rows: Vec<(usize, Vec<f64>)>,
}

fn parse_csv(text: &str, has_header: bool, source: &str) -> Result<Table> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let header: Vec<String> = if has_header {
        let (_, line) = lines
            .next()
            .with_context(|| format!("{source} is empty: expected a header row and data rows"))?;
        line.split(',')
            .map(|h| h.trim().trim_matches('"').to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut columns = header.len();
    let mut rows = Vec::new();
    for (line_no, line) in lines {
        let cells = line
            .split(',')
            .enumerate()
            .map(|(col, cell)| {
                let cell = cell.trim().trim_matches('"');
                cell.parse::<f64>().ok().filter(|v| v.is_finite()).with_context(|| {
                    let name = header.get(col).map(|h| format!(" (`{h}`)")).unwrap_or_default();
                    format!(
                        "{source}, line {line_no}, column {}{name}: expected a number, found `{cell}`",
                        col + 1
                    )
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        if columns == 0 {
            columns = cells.len();
        }
        if cells.len() != columns {
            bail!(
                "{source}, line {line_no}: expected {columns} columns, found {}",
                cells.len()
            );
        }
        rows.push((line_no, cells));
    }
    if rows.is_empty() {
        bail!("{source} has no data rows");
    }
    if columns < 2 {
        bail!("{source} has {columns} column: expected features and a target column");
    }
    Ok(Table {
        header,
        columns,
        rows,
    })
}

fn to_dataset(table: Table, target: usize, scale: f64, source: String) -> Result<Dataset> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("the feature scale must be a positive number, found {scale}");
    }
    let n = table.rows.len();
    let f = table.columns - 1;
    let mut features = Vec::with_capacity(n * f);
    let mut labels = Vec::with_capacity(n);
    for (line_no, row) in &table.rows {
        let class = row[target];
        if class < 0.0 || class.fract() != 0.0 || class > 1.0e6 {
            bail!(
                "{source}, line {line_no}: the target must be a class number 0, 1, 2, ..., found {class}"
            );
        }
        labels.push(class as usize);
        features.extend(
            row.iter()
                .enumerate()
                .filter(|&(c, _)| c != target)
                .map(|(_, &v)| (v / scale) as f32),
        );
    }
    let num_classes = labels.iter().max().map_or(0, |m| m + 1);
    if num_classes < 2 {
        bail!("{source}: expected at least 2 classes in the target column, found {num_classes}");
    }
    let features =
        Array2::from_shape_vec((n, f), features).context("internal error: feature matrix shape")?;
    Ok(Dataset {
        features,
        labels,
        num_classes,
        source,
    })
}

/// Fisher–Yates shuffle of `items` driven by 32-bit draws from `next_u32`: the same draws
/// give the same order on every machine.
pub(crate) fn shuffle<T>(items: &mut [T], mut next_u32: impl FnMut() -> u32) {
    for i in (1..items.len()).rev() {
        let j = (next_u32() as usize) % (i + 1);
        items.swap(i, j);
    }
}

/// Splits `data` into (train, test): a shuffled order from `next_u32`, then the last
/// `test_fraction` of it (at least one sample each side) is the test set.
pub(crate) fn split(
    data: &Dataset,
    test_fraction: f64,
    next_u32: impl FnMut() -> u32,
) -> Result<(Dataset, Dataset)> {
    if !(0.0..1.0).contains(&test_fraction) || test_fraction <= 0.0 {
        bail!("test_fraction must be in (0, 1), found {test_fraction}");
    }
    let n = data.len();
    let n_test = ((n as f64 * test_fraction).round() as usize).clamp(1, n.saturating_sub(1));
    if n < 2 {
        bail!("{}: expected at least 2 samples, found {n}", data.source);
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, next_u32);
    let (train, test) = order.split_at(n - n_test);
    Ok((data.select(train), data.select(test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_have_1797_samples_of_64_pixels_in_10_classes() {
        let d = digits(DIGITS_SCALE).unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.num_features(), 64);
        assert_eq!(d.num_classes, 10);
        assert!(d.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // The first image is a 0; its third pixel is 5/16.
        assert_eq!(d.labels[0], 0);
        assert!((d.features[[0, 2]] - 5.0 / 16.0).abs() < 1e-7);
    }

    #[test]
    fn csv_target_column_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "a,label,b\n1,0,2\n3,1,4\n5,2,6\n").unwrap();
        let d = csv_file(&path, Some("label"), 1.0).unwrap();
        assert_eq!(d.labels, vec![0, 1, 2]);
        assert_eq!(d.features.row(1).to_vec(), vec![3.0, 4.0]);
        let err = csv_file(&path, Some("nope"), 1.0).unwrap_err().to_string();
        assert!(err.contains("no column named `nope`"), "{err}");
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "a,y\n1,0\nx,1\n").unwrap();
        let err = format!("{:#}", csv_file(&path, None, 1.0).unwrap_err());
        assert!(err.contains("line 3, column 1"), "{err}");
        std::fs::write(&path, "a,y\n1,0.5\n2,1\n").unwrap();
        let err = format!("{:#}", csv_file(&path, None, 1.0).unwrap_err());
        assert!(err.contains("class number"), "{err}");
        std::fs::write(&path, "a,y\n1,0\n2\n").unwrap();
        let err = format!("{:#}", csv_file(&path, None, 1.0).unwrap_err());
        assert!(err.contains("expected 2 columns, found 1"), "{err}");
    }

    #[test]
    fn split_is_a_partition_and_depends_on_the_draws() {
        let d = digits(DIGITS_SCALE).unwrap();
        let mut state = 1u32;
        let lcg = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state
        };
        let (train, test) = split(&d, 0.2, lcg).unwrap();
        assert_eq!(train.len() + test.len(), 1797);
        assert_eq!(test.len(), 359);
        let mut a = (0..10).collect::<Vec<_>>();
        shuffle(&mut a, || 7);
        let mut b = (0..10).collect::<Vec<_>>();
        shuffle(&mut b, || 3);
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }
}
