//! Line charts (SVG or PNG, by the file's extension) for schedules and training curves.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
    /// The lines drawn in it; their labels form a legend under the chart.
    pub(crate) lines: Vec<Line>,
}

/// The height of a panel's chart, without its legend.
const CHART_HEIGHT: u32 = 300;
/// The height of one legend row.
const LEGEND_ROW: u32 = 20;
/// The width of every picture.
const WIDTH: u32 = 960;
/// The height of the title strip.
const TITLE_HEIGHT: u32 = 44;

impl Panel {
    fn legend_rows(&self) -> u32 {
        self.lines.iter().filter(|l| !l.label.is_empty()).count() as u32
    }

    fn height(&self) -> u32 {
        let rows = self.legend_rows();
        CHART_HEIGHT + if rows > 0 { rows * LEGEND_ROW + 12 } else { 0 }
    }
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
    let height = TITLE_HEIGHT + figure.panels.iter().map(Panel::height).sum::<u32>();
    let size = (WIDTH, height.max(TITLE_HEIGHT + CHART_HEIGHT));
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
    let (title, mut rest) = root.split_vertically(TITLE_HEIGHT);
    title
        .draw_text(
            &figure.title,
            &TextStyle::from(("sans-serif", 20).into_font())
                .pos(Pos::new(HPos::Center, VPos::Center)),
            ((WIDTH / 2) as i32, (TITLE_HEIGHT / 2) as i32),
        )
        .map_err(|e| e.to_string())?;
    for panel in &figure.panels {
        let (area, below) = rest.split_vertically(panel.height());
        let (chart, legend) = area.split_vertically(CHART_HEIGHT);
        draw_panel(panel, &chart).map_err(|e| e.to_string())?;
        draw_legend(panel, &legend).map_err(|e| e.to_string())?;
        rest = below;
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
        if points.len() == 1 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style.filled())))?;
        } else {
            chart.draw_series(LineSeries::new(points, style))?;
        }
    }
    Ok(())
}

/// The legend under a chart: one row per labelled line, never over the data.
fn draw_legend<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB::ErrorType: 'static,
{
    let style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let labelled = panel
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.label.is_empty());
    for (row, (i, line)) in labelled.enumerate() {
        let y = 4 + (row as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
        let color = COLORS[i % COLORS.len()];
        area.draw(&PathElement::new(
            vec![(96, y), (126, y)],
            ShapeStyle::from(&color).stroke_width(3),
        ))?;
        area.draw_text(&line.label, &style, (134, y))?;
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
