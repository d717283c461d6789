//! Line charts (SVG or PNG, by the file's extension) for schedules and training curves.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// DejaVu Sans cut down to Latin-1, so charts have text on machines without fonts.
static FONT: &[u8] = include_bytes!("../data/DejaVuSans-subset.ttf");

/// The colours of successive lines (colour-blind friendly, from the Okabe–Ito palette).
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// One labelled line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The legend entry.
    pub(crate) label: String,
    /// `(x, y)` points, in x order; non-finite points are skipped.
    pub(crate) points: Vec<(f64, f64)>,
}

/// One chart area with its own axes.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    /// The x axis's label.
    pub(crate) x_label: String,
    /// The y axis's label.
    pub(crate) y_label: String,
    /// The lines drawn in it.
    pub(crate) lines: Vec<Line>,
    /// Put the legend in the lower right corner instead of the upper right.
    pub(crate) legend_below: bool,
}

/// Panels stacked vertically under one title.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// The caption on top.
    pub(crate) title: String,
    /// The panels, top to bottom.
    pub(crate) panels: Vec<Panel>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is ours and known to be valid; if it were not, text would be missing
        // and drawing would report the error.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws `figure` into `path`: SVG for `.svg`, PNG for `.png`.
pub(crate) fn save(figure: &Figure, path: &Path) -> Result<()> {
    register_font();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let panels = figure.panels.len().max(1) as u32;
    let size = (960, 80 + 340 * panels);
    let draw_err = |e: String| anyhow!("cannot draw {}: {e}", path.display());
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(figure, &root).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        "png" => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(figure, &root).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.to_string()))?;
        }
        other => bail!(
            "cannot tell the picture format of {}: expected a .svg or .png file name, found `.{other}`",
            path.display()
        ),
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(&figure.title, ("sans-serif", 24))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((figure.panels.len().max(1), 1));
    for (panel, area) in figure.panels.iter().zip(areas.iter()) {
        draw_panel(panel, area).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB::ErrorType: 'static,
{
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter(finite).copied())
        .collect();
    let (x0, x1) = padded_range(all.iter().map(|p| p.0), 0.01);
    let (y0, y1) = padded_range(all.iter().map(|p| p.1), 0.05);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .y_label_formatter(&|v| short_number(*v))
        .x_label_formatter(&|v| short_number(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, line) in panel.lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = line.points.iter().filter(finite).copied().collect();
        let style = ShapeStyle::from(&color).stroke_width(2);
        let series = if points.len() == 1 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style.filled())))?
        } else {
            chart.draw_series(LineSeries::new(points, style))?
        };
        series
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    if panel.lines.iter().any(|l| !l.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(if panel.legend_below {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

/// `(min, max)` of the values, widened by `pad` of the span (or by a little when flat).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1e-300) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    (lo - span * pad, hi + span * pad)
}

/// A tick label: plain for ordinary magnitudes, scientific for tiny or huge ones.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> Figure {
        Figure {
            title: "test".into(),
            panels: vec![Panel {
                x_label: "step".into(),
                y_label: "lr".into(),
                lines: vec![
                    Line {
                        label: "group 0".into(),
                        points: vec![(0.0, 0.1), (1.0, 0.05), (2.0, f64::NAN)],
                    },
                    Line {
                        label: "one point".into(),
                        points: vec![(1.0, 0.2)],
                    },
                ],
                legend_below: false,
            }],
        }
    }

    #[test]
    fn svg_has_axis_labels_and_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        save(&figure(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // plotters writes each text element's content on a line of its own.
        for text in ["step", "lr", "group 0", "one point", "test"] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "missing {text}"
            );
        }
    }

    #[test]
    fn png_is_written_and_other_extensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        save(&figure(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let err = save(&figure(), &dir.path().join("c.jpg")).unwrap_err();
        assert!(err.to_string().contains(".svg or .png"), "{err}");
    }

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded_range([1.0, 1.0].into_iter(), 0.05), (0.9, 1.1));
        assert_eq!(padded_range(std::iter::empty(), 0.05), (0.0, 1.0));
        let (lo, hi) = padded_range([0.0, 10.0].into_iter(), 0.1);
        assert!((lo + 1.0).abs() < 1e-12 && (hi - 11.0).abs() < 1e-12);
        assert_eq!(short_number(0.001), "0.001");
        assert_eq!(short_number(4e-5), "4.0e-5");
        assert_eq!(short_number(250.0), "250");
    }
}
