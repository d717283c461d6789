//! Training metrics: what each step and each epoch measured, `metrics.csv`, and the
//! `lr.svg` / `loss.svg` pictures of a run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::charts::{self, Figure, Line, Panel};

/// How `metrics.csv` is laid out (shown in `tempo train --help`).
pub(crate) const CSV_LAYOUT: &str = "\
metrics.csv has one row per optimizer step and one row per epoch, told apart by `kind`:
  kind,step,epoch,lr_0,...,lr_<G-1>,momentum_0,...,momentum_<G-1>,loss,test_accuracy
  kind=step:  the step number (from 1), its epoch (from 1), the lr and momentum each
              param group used in that step (momentum is betas[0] for the Adam family,
              blank if the optimizer has none), and the mini-batch's training loss.
  kind=epoch: the last step of the epoch, the epoch, the lrs for the next epoch, blank
              momenta, the epoch's mean training loss, and the test accuracy (0..1).";

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepRecord {
    /// The step number, from 1.
    pub(crate) step: u64,
    /// The epoch, from 1.
    pub(crate) epoch: u64,
    /// The lr each group used.
    pub(crate) lrs: Vec<f64>,
    /// The momentum each group used, if it has one.
    pub(crate) momenta: Vec<Option<f64>>,
    /// The mini-batch loss.
    pub(crate) loss: f64,
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochRecord {
    /// The epoch, from 1.
    pub(crate) epoch: u64,
    /// The last step of the epoch.
    pub(crate) step: u64,
    /// The lr of each group after the epoch.
    pub(crate) lrs: Vec<f64>,
    /// The mean training loss over the epoch's mini-batches.
    pub(crate) train_loss: f64,
    /// The share of test samples classified right.
    pub(crate) test_accuracy: f64,
}

/// Everything measured so far; saved in each checkpoint so a resumed run keeps its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Metrics {
    /// Per step.
    pub(crate) steps: Vec<StepRecord>,
    /// Per epoch.
    pub(crate) epochs: Vec<EpochRecord>,
}

impl Metrics {
    fn num_groups(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.lrs.len())
            .chain(self.epochs.iter().map(|e| e.lrs.len()))
            .max()
            .unwrap_or(1)
    }

    /// The CSV text described by [`CSV_LAYOUT`].
    pub(crate) fn to_csv(&self) -> String {
        let groups = self.num_groups();
        let mut out = String::from("kind,step,epoch");
        for g in 0..groups {
            let _ = write!(out, ",lr_{g}");
        }
        for g in 0..groups {
            let _ = write!(out, ",momentum_{g}");
        }
        out.push_str(",loss,test_accuracy\n");
        let mut epochs = self.epochs.iter().peekable();
        for s in &self.steps {
            // Epoch rows go right after the epoch's last step.
            while let Some(e) = epochs.next_if(|e| e.step < s.step) {
                epoch_row(&mut out, e, groups);
            }
            let _ = write!(out, "step,{},{}", s.step, s.epoch);
            for g in 0..groups {
                out.push(',');
                if let Some(lr) = s.lrs.get(g) {
                    let _ = write!(out, "{lr}");
                }
            }
            for g in 0..groups {
                out.push(',');
                if let Some(Some(m)) = s.momenta.get(g) {
                    let _ = write!(out, "{m}");
                }
            }
            let _ = writeln!(out, ",{},", s.loss);
        }
        for e in epochs {
            epoch_row(&mut out, e, groups);
        }
        out
    }

    /// Writes `metrics.csv`, `lr.svg` and `loss.svg` into `dir`.
    pub(crate) fn write_all(&self, dir: &Path) -> Result<()> {
        let csv = dir.join("metrics.csv");
        std::fs::write(&csv, self.to_csv())
            .with_context(|| format!("cannot write {}", csv.display()))?;
        charts::save(&self.lr_figure(), &dir.join("lr.svg"))?;
        charts::save(&self.loss_figure(), &dir.join("loss.svg"))?;
        Ok(())
    }

    /// Every group's lr per step, and the momentum when it changes during the run.
    pub(crate) fn lr_figure(&self) -> Figure {
        let groups = self.num_groups();
        let lr_lines = (0..groups)
            .map(|g| Line {
                label: format!("lr, group {g}"),
                points: self
                    .steps
                    .iter()
                    .filter_map(|s| s.lrs.get(g).map(|&lr| (s.step as f64, lr)))
                    .collect(),
            })
            .collect();
        let mut panels = vec![Panel {
            x_label: "step".into(),
            y_label: "learning rate".into(),
            lines: lr_lines,
        }];
        let momentum_lines: Vec<Line> = (0..groups)
            .map(|g| Line {
                label: format!("momentum, group {g}"),
                points: self
                    .steps
                    .iter()
                    .filter_map(|s| {
                        s.momenta
                            .get(g)
                            .copied()
                            .flatten()
                            .map(|m| (s.step as f64, m))
                    })
                    .collect(),
            })
            .filter(|l| varies(l.points.iter().map(|p| p.1)))
            .collect();
        if !momentum_lines.is_empty() {
            panels.push(Panel {
                x_label: "step".into(),
                y_label: "momentum (betas[0] or momentum)".into(),
                lines: momentum_lines,
            });
        }
        Figure {
            title: "Learning rate per optimizer step".into(),
            panels,
        }
    }

    /// Training loss per step and test accuracy per epoch.
    pub(crate) fn loss_figure(&self) -> Figure {
        Figure {
            title: "Training loss and test accuracy".into(),
            panels: vec![
                Panel {
                    x_label: "step".into(),
                    y_label: "training loss".into(),
                    lines: vec![
                        Line {
                            label: "mini-batch loss".into(),
                            points: self.steps.iter().map(|s| (s.step as f64, s.loss)).collect(),
                        },
                        Line {
                            label: "epoch mean".into(),
                            points: self
                                .epochs
                                .iter()
                                .map(|e| (e.step as f64, e.train_loss))
                                .collect(),
                        },
                    ],
                },
                Panel {
                    x_label: "epoch".into(),
                    y_label: "test accuracy".into(),
                    lines: vec![Line {
                        label: "test accuracy".into(),
                        points: self
                            .epochs
                            .iter()
                            .map(|e| (e.epoch as f64, e.test_accuracy))
                            .collect(),
                    }],
                },
            ],
        }
    }
}

fn epoch_row(out: &mut String, e: &EpochRecord, groups: usize) {
    let _ = write!(out, "epoch,{},{}", e.step, e.epoch);
    for g in 0..groups {
        out.push(',');
        if let Some(lr) = e.lrs.get(g) {
            let _ = write!(out, "{lr}");
        }
    }
    for _ in 0..groups {
        out.push(',');
    }
    let _ = writeln!(out, ",{},{}", e.train_loss, e.test_accuracy);
}

fn varies(mut values: impl Iterator<Item = f64>) -> bool {
    let Some(first) = values.next() else {
        return false;
    };
    values.any(|v| (v - first).abs() > 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        let step = |step, epoch, lr, m, loss| StepRecord {
            step,
            epoch,
            lrs: vec![lr],
            momenta: vec![m],
            loss,
        };
        Metrics {
            steps: vec![
                step(1, 1, 0.1, Some(0.95), 2.0),
                step(2, 1, 0.2, Some(0.9), 1.5),
                step(3, 2, 0.05, Some(0.85), 1.0),
            ],
            epochs: vec![
                EpochRecord {
                    epoch: 1,
                    step: 2,
                    lrs: vec![0.05],
                    train_loss: 1.75,
                    test_accuracy: 0.5,
                },
                EpochRecord {
                    epoch: 2,
                    step: 3,
                    lrs: vec![0.01],
                    train_loss: 1.0,
                    test_accuracy: 0.75,
                },
            ],
        }
    }

    #[test]
    fn csv_interleaves_epoch_rows_after_their_last_step() {
        let csv = metrics().to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "kind,step,epoch,lr_0,momentum_0,loss,test_accuracy"
        );
        assert_eq!(lines[1], "step,1,1,0.1,0.95,2,");
        assert_eq!(lines[2], "step,2,1,0.2,0.9,1.5,");
        assert_eq!(lines[3], "epoch,2,1,0.05,,1.75,0.5");
        assert_eq!(lines[4], "step,3,2,0.05,0.85,1,");
        assert_eq!(lines[5], "epoch,3,2,0.01,,1,0.75");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn pictures_show_momentum_only_when_it_changes() {
        let mut m = metrics();
        assert_eq!(m.lr_figure().panels.len(), 2);
        for s in &mut m.steps {
            s.momenta = vec![Some(0.9)];
        }
        assert_eq!(m.lr_figure().panels.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        m.write_all(dir.path()).unwrap();
        for f in ["metrics.csv", "lr.svg", "loss.svg"] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
    }
}
