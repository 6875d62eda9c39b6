//! The capacity plan's chart: every configuration evaluated, cost (or GPUs) against latency,
//! those that meet the targets filled, the Pareto front of those marked and joined, the
//! latency target drawn, the recommended configuration ringed.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{font, legend, sizes, tick, titled};
use super::style::Palette;
use super::{Chart, de};

/// One configuration on the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Cost per hour, or GPUs when unpriced.
    pub x: f64,
    /// Latency, ms.
    pub y: f64,
    /// Sharing modes, e.g. `mig+dedicated` (the colour).
    pub modes: String,
    /// Meets the targets.
    pub pass: bool,
    /// The recommended one.
    pub recommended: bool,
}

/// The chart's data.
#[derive(Clone, Debug)]
pub struct Pareto {
    /// Title.
    pub title: String,
    /// x axis description.
    pub x_desc: String,
    /// y axis description.
    pub y_desc: String,
    /// The latency target, if one.
    pub target: Option<f64>,
    /// Points.
    pub points: Vec<Point>,
}

/// Indices of the passing points on the Pareto front (no other passing point is at least as
/// cheap and at least as fast, and strictly better in one), sorted by cost.
pub fn front(points: &[Point]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].pass && points[i].y.is_finite())
        .filter(|&i| {
            let p = &points[i];
            !points.iter().any(|q| {
                q.pass && q.y.is_finite() && q.x <= p.x && q.y <= p.y && (q.x < p.x || q.y < p.y)
            })
        })
        .collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .x
            .total_cmp(&points[b].x)
            .then(points[a].y.total_cmp(&points[b].y))
    });
    idx.dedup_by(|a, b| points[*a].x == points[*b].x && points[*a].y == points[*b].y);
    idx
}

impl Chart for Pareto {
    fn stem(&self) -> String {
        "plan_candidates".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = sizes(root);
        let area = titled(root, &self.title)?;
        let shown: Vec<&Point> = self.points.iter().filter(|p| p.y.is_finite()).collect();
        let (x0, x1) = shown.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
            (a.min(p.x), b.max(p.x))
        });
        let ys = shown.iter().map(|p| p.y).chain(self.target);
        let (y0, y1) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        let pad = ((x1 - x0) * 0.08).max(if x1 - x0 < 10.0 { 1.0 } else { 0.5 });
        let (x0, x1) = (x0 - pad, x1 + pad);
        let log = y1 / y0.max(1e-9) > 30.0;
        let mut pal = Palette::default();
        let mut modes: Vec<&str> = Vec::new();
        for p in &shown {
            if !modes.contains(&p.modes.as_str()) {
                modes.push(&p.modes);
            }
        }
        modes.sort();
        let front = front(&self.points);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc.as_str())
                    .y_desc(self.y_desc.as_str())
                    .x_labels(12)
                    .x_label_formatter(&|v: &f64| {
                        // A narrow range of large values: one decimal keeps ticks apart.
                        if (x1 - x0) < 30.0 && v.abs() >= 100.0 {
                            let t = format!("{v:.1}");
                            t.trim_end_matches('0').trim_end_matches('.').to_string()
                        } else {
                            tick(v)
                        }
                    })
                    .y_label_formatter(&tick)
                    .label_style(font(s.tick))
                    .axis_desc_style(font(s.axis))
                    .draw()
                    .map_err(de)?;
                let r = (s.tick / 3).max(4) as i32;
                // Hollow: misses a target; filled: meets them all.
                for m in &modes {
                    // Single modes keep the palette's fixed colours; mixes take the others.
                    let c = if m.contains('+') {
                        pal.color(&format!("mix {m}"))
                    } else {
                        pal.color(m)
                    };
                    let pts: Vec<(f64, f64)> = shown
                        .iter()
                        .filter(|p| p.modes == *m)
                        .map(|p| (p.x, p.y))
                        .collect();
                    let passing: Vec<(f64, f64)> = shown
                        .iter()
                        .filter(|p| p.modes == *m && p.pass)
                        .map(|p| (p.x, p.y))
                        .collect();
                    chart
                        .draw_series(
                            pts.iter()
                                .map(|&xy| Circle::new(xy, r, c.mix(0.8).stroke_width(2))),
                        )
                        .map_err(de)?
                        .label(m.to_string())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
                    chart
                        .draw_series(passing.iter().map(|&xy| Circle::new(xy, r, c.filled())))
                        .map_err(de)?;
                }
                if front.len() > 1 {
                    let line: Vec<(f64, f64)> = front
                        .iter()
                        .map(|&i| (self.points[i].x, self.points[i].y))
                        .collect();
                    chart
                        .draw_series(LineSeries::new(line, BLACK.stroke_width(2)))
                        .map_err(de)?
                        .label("Pareto front (meets the targets)")
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3))
                        });
                }
                chart
                    .draw_series(front.iter().map(|&i| {
                        let p = &self.points[i];
                        Rectangle::new([(p.x, p.y), (p.x, p.y)], BLACK.stroke_width(1))
                    }))
                    .map_err(de)?;
                chart
                    .draw_series(front.iter().map(|&i| {
                        let p = &self.points[i];
                        Circle::new((p.x, p.y), r + 3, BLACK.stroke_width(2))
                    }))
                    .map_err(de)?;
                if let Some(t) = self.target {
                    chart
                        .draw_series(DashedLineSeries::new(
                            vec![(x0, t), (x1, t)],
                            10,
                            6,
                            RED.stroke_width(2),
                        ))
                        .map_err(de)?
                        .label(format!("target {}", tick(&t)))
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 8, y)], RED.stroke_width(3))
                        });
                }
                for p in self
                    .points
                    .iter()
                    .filter(|p| p.recommended && p.y.is_finite())
                {
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            (p.x, p.y),
                            r + 8,
                            BLACK.stroke_width(3),
                        )))
                        .map_err(de)?
                        .label("recommended")
                        .legend(|(x, y)| Circle::new((x + 8, y), 7, BLACK.stroke_width(2)));
                }
                // Cheap and fast is the empty corner of a cost-latency trade-off.
                legend(&mut chart, SeriesLabelPosition::LowerLeft, s.tick)?;
                Ok(())
            }};
        }
        if log {
            body!(
                ChartBuilder::on(&area)
                    .margin(12)
                    .x_label_area_size(s.axis * 3)
                    .y_label_area_size(s.axis * 4)
                    .build_cartesian_2d(x0..x1, ((y0 / 1.3).max(1e-3)..y1 * 1.3).log_scale())
                    .map_err(de)?
            )
        } else {
            body!(
                ChartBuilder::on(&area)
                    .margin(12)
                    .x_label_area_size(s.axis * 3)
                    .y_label_area_size(s.axis * 4)
                    .build_cartesian_2d(x0..x1, 0.0..y1 * 1.15)
                    .map_err(de)?
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64, y: f64, pass: bool) -> Point {
        Point {
            x,
            y,
            modes: "mig".into(),
            pass,
            recommended: false,
        }
    }

    #[test]
    fn pareto_front_of_passing_points() {
        let pts = vec![
            p(3.0, 900.0, true),
            p(3.0, 800.0, true),
            p(4.0, 700.0, true),
            p(4.0, 750.0, true),
            p(5.0, 710.0, true),
            p(2.0, 500.0, false),
            p(6.0, f64::INFINITY, true),
        ];
        assert_eq!(front(&pts), [1, 2]);
    }

    #[test]
    fn renders_png_and_svg() {
        let chart = Pareto {
            title: "t".into(),
            x_desc: "cost".into(),
            y_desc: "ms".into(),
            target: Some(800.0),
            points: vec![
                p(3.0, 900.0, false),
                p(4.0, 700.0, true),
                Point {
                    recommended: true,
                    ..p(5.0, 600.0, true)
                },
            ],
        };
        let (png, svg) = super::super::render(&chart, super::super::Options::default()).unwrap();
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G']));
        assert!(svg.contains("Pareto front") && svg.contains("recommended"));
    }
}
