//! The charts: grouped bars, latency per stage, latency CDFs, busy timelines, sweep curves.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::{RunInfo, Series, StageStats, StudyData, SweepData};
use super::style::{FAMILY, Palette, Sizes};
use super::{Chart, PlotError, de};
use crate::sweep::stats::knee;
use crate::sweep::table::cell;

pub(crate) fn font(px: u32) -> TextStyle<'static> {
    (FAMILY, px).into_font().into()
}

pub(crate) fn sizes<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> Sizes {
    Sizes::for_height(root.dim_in_pixel().1)
}

/// Title across the top; returns the area below it.
pub(crate) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, String> {
    let s = sizes(root);
    let m = (s.title / 3) as i32;
    root.margin(m, m, m, m)
        .titled(title, font(s.title))
        .map_err(de)
}

/// Category names centred under x positions 0, 1, ... of `chart`, drawn on `root`.
fn category_labels<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    root: &DrawingArea<DB, Shift>,
    chart: &ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    labels: &[String],
    y: f64,
    px: u32,
) -> Result<(), String> {
    let (ox, oy) = root.get_base_pixel();
    let style = font(px).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, l) in labels.iter().enumerate() {
        let (x, yy) = chart.backend_coord(&(i as f64, y));
        root.draw_text(l, &style, (x - ox, yy - oy + px as i32 / 2))
            .map_err(de)?;
    }
    Ok(())
}

pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
    px: u32,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(font(px))
        .draw()
        .map_err(de)
}

/// Bars of several series side by side in each group (categories on x).
pub struct GroupedBars {
    /// File stem.
    pub stem: String,
    /// Title.
    pub title: String,
    /// What the groups are (x axis description).
    pub x_desc: String,
    /// Value description with unit.
    pub y_desc: String,
    /// Group names, left to right.
    pub groups: Vec<String>,
    /// Series names and colours.
    pub series: Vec<(String, RGBColor)>,
    /// `values[series][group]`.
    pub values: Vec<Vec<Option<f64>>>,
}

impl Chart for GroupedBars {
    fn stem(&self) -> String {
        self.stem.clone()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = sizes(root);
        let area = titled(root, &self.title)?;
        let n = self.groups.len().max(1) as f64;
        let k = self.series.len().max(1) as f64;
        let max = self
            .values
            .iter()
            .flatten()
            .flatten()
            .fold(0.0f64, |a, &b| a.max(b));
        let top = if max > 0.0 { max * 1.18 } else { 1.0 };
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(s.axis * 3)
            .y_label_area_size(s.axis * 4)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)
            .map_err(de)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .y_label_formatter(&tick)
            .label_style(font(s.tick))
            .axis_desc_style(font(s.axis))
            .light_line_style(BLACK.mix(0.03))
            .max_light_lines(4)
            .bold_line_style(BLACK.mix(0.15))
            .draw()
            .map_err(de)?;
        let w = 0.8 / k;
        for (si, (name, color)) in self.series.iter().enumerate() {
            let color = *color;
            let bars: Vec<_> = self.values[si]
                .iter()
                .enumerate()
                .filter_map(|(g, v)| v.map(|v| (g, v)))
                .collect();
            chart
                .draw_series(bars.iter().map(|&(g, v)| {
                    let x0 = g as f64 - 0.4 + si as f64 * w;
                    Rectangle::new([(x0 + w * 0.04, 0.0), (x0 + w * 0.96, v)], color.filled())
                }))
                .map_err(de)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled())
                });
            let value_style = font(s.tick).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(bars.iter().map(|&(g, v)| {
                    let xc = g as f64 - 0.4 + (si as f64 + 0.5) * w;
                    // Three decimals for rates; whole numbers from 100 up (e.g. requests per $).
                    let label = if v.abs() >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.3}")
                    };
                    Text::new(label, (xc, v + top * 0.01), value_style.clone())
                }))
                .map_err(de)?;
        }
        category_labels(root, &chart, &self.groups, 0.0, s.axis)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight, s.tick)
    }
}

/// One configuration's bars in a latency panel: name, colour, stats per stage.
pub type StageSeries = (String, RGBColor, Vec<Option<StageStats>>);

/// A partition's busy series in a timeline panel: legend, colour, buckets.
pub type PartitionSeries = (String, RGBColor, Series);

/// Picks one value out of a bucket `(start, end, busy, switching)`.
type BucketField<'a> = &'a dyn Fn(&(f64, f64, f64, f64)) -> f64;

/// Latency percentiles per stage: p50 bar, p95 tick, p99 whisker top; one panel per facet.
pub struct StageBoxes {
    /// Panels: caption and `(series, colour, stats per stage)`.
    pub facets: Vec<(String, Vec<StageSeries>)>,
    /// Stage names (x categories).
    pub stages: Vec<String>,
}

impl Chart for StageBoxes {
    fn stem(&self) -> String {
        "latency_by_stage".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = sizes(root);
        let area = titled(
            root,
            "Latency per stage, successful requests (bar p50, tick p95, whisker top p99)",
        )?;
        let panels = area.split_evenly((self.facets.len().max(1), 1));
        for ((caption, series), panel) in self.facets.iter().zip(panels.iter()) {
            let all: Vec<&StageStats> = series.iter().flat_map(|x| x.2.iter().flatten()).collect();
            let lo = all.iter().map(|x| x.p50).fold(f64::INFINITY, f64::min);
            let hi = all.iter().map(|x| x.p99).fold(0.0f64, f64::max);
            let (lo, hi) = if lo.is_finite() && hi > 0.0 {
                ((lo / 2.0).max(1e-3), hi * 1.6)
            } else {
                (1.0, 10.0)
            };
            let n = self.stages.len() as f64;
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, font(s.caption))
                .margin(10)
                .x_label_area_size(s.tick * 2)
                .y_label_area_size(s.axis * 4)
                .build_cartesian_2d(-0.5..n - 0.5, (lo..hi).log_scale())
                .map_err(de)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .x_label_formatter(&|_| String::new())
                .y_desc("latency, ms (log)")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(font(s.tick))
                .axis_desc_style(font(s.axis))
                .light_line_style(BLACK.mix(0.03))
                .max_light_lines(4)
                .bold_line_style(BLACK.mix(0.15))
                .draw()
                .map_err(de)?;
            let k = series.len().max(1) as f64;
            let w = 0.8 / k;
            for (si, (name, color, stats)) in series.iter().enumerate() {
                let color = *color;
                let items: Vec<(f64, StageStats)> = stats
                    .iter()
                    .enumerate()
                    .filter_map(|(i, x)| x.map(|x| (i as f64 - 0.4 + si as f64 * w, x)))
                    .collect();
                chart
                    .draw_series(items.iter().map(|(x0, st)| {
                        Rectangle::new(
                            [(x0 + w * 0.08, lo), (x0 + w * 0.92, st.p50)],
                            color.filled(),
                        )
                    }))
                    .map_err(de)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled())
                    });
                let ink = BLACK.stroke_width(2);
                for (x0, st) in &items {
                    let xc = x0 + w * 0.5;
                    let tick = |y: f64, half: f64| {
                        PathElement::new(vec![(xc - w * half, y), (xc + w * half, y)], ink)
                    };
                    chart
                        .draw_series([
                            PathElement::new(vec![(xc, st.p50), (xc, st.p99)], ink),
                            tick(st.p95, 0.3),
                            tick(st.p99, 0.18),
                        ])
                        .map_err(de)?;
                }
            }
            category_labels(root, &chart, &self.stages, lo, s.tick)?;
            legend(&mut chart, SeriesLabelPosition::UpperLeft, s.tick)?;
        }
        Ok(())
    }
}

/// A line, solid or dashed.
fn line<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pts: Vec<(f64, f64)>,
    color: RGBColor,
    dashed: bool,
    label: Option<&str>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = color.stroke_width(2);
    let anno = if dashed {
        chart
            .draw_series(DashedLineSeries::new(pts, 10, 6, style))
            .map_err(de)?
    } else {
        chart.draw_series(LineSeries::new(pts, style)).map_err(de)?
    };
    if let Some(l) = label {
        anno.label(l).legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(3))
            } else {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            }
        });
    }
    Ok(())
}

/// One CDF curve.
pub struct CdfLine {
    /// Legend label.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// Dashed (a second load of the same configuration).
    pub dashed: bool,
    /// `(latency ms, probability)`.
    pub points: Vec<(f64, f64)>,
}

/// Latency CDFs per configuration, one panel per stage.
pub struct Cdf {
    /// `(stage, lines)`.
    pub facets: Vec<(String, Vec<CdfLine>)>,
}

impl Chart for Cdf {
    fn stem(&self) -> String {
        "latency_cdf".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let area = titled(root, "Latency CDF per configuration, successful requests")?;
        let cols = if self.facets.len() > 3 {
            3
        } else {
            self.facets.len().max(1)
        };
        let rows = self.facets.len().div_ceil(cols).max(1);
        let panels = area.split_evenly((rows, cols));
        let last = self.facets.len().saturating_sub(1);
        for (fi, ((stage, lines), panel)) in self.facets.iter().zip(panels.iter()).enumerate() {
            let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
            let (lo, hi) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
            let (lo, hi) = if lo.is_finite() && hi > 0.0 {
                ((lo / 1.3).max(1e-3), hi * 1.3)
            } else {
                (1.0, 10.0)
            };
            let legend_here = fi == last;
            if hi / lo > 30.0 {
                cdf_panel(
                    panel,
                    stage,
                    (lo..hi).log_scale(),
                    "latency, ms (log)",
                    lines,
                    legend_here,
                )?;
            } else {
                cdf_panel(panel, stage, lo..hi, "latency, ms", lines, legend_here)?;
            }
        }
        Ok(())
    }
}

/// One CDF panel, on a linear or logarithmic latency axis.
fn cdf_panel<DB, XR>(
    panel: &DrawingArea<DB, Shift>,
    stage: &str,
    x: XR,
    x_desc: &str,
    lines: &[CdfLine],
    with_legend: bool,
) -> Result<(), String>
where
    DB: DrawingBackend,
    XR: AsRangedCoord<Value = f64>,
    XR::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let s = sizes(panel);
    let s = Sizes {
        caption: s.caption * 2,
        tick: s.tick * 2,
        axis: s.axis * 2,
        ..s
    };
    let mut chart = ChartBuilder::on(panel)
        .caption(stage, font(s.caption))
        .margin(8)
        .x_label_area_size(s.axis * 2 + s.tick)
        .y_label_area_size(s.axis * 3)
        .build_cartesian_2d(x, 0.0..1.0)
        .map_err(de)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction ≤ x")
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(s.tick))
        .axis_desc_style(font(s.tick))
        .light_line_style(BLACK.mix(0.03))
        .max_light_lines(4)
        .bold_line_style(BLACK.mix(0.15))
        .draw()
        .map_err(de)?;
    for l in lines {
        let label = with_legend.then_some(l.label.as_str());
        line(&mut chart, l.points.clone(), l.color, l.dashed, label)?;
    }
    if with_legend {
        legend(&mut chart, SeriesLabelPosition::LowerRight, s.tick)?;
    }
    Ok(())
}

/// Average consecutive buckets so a panel shows at most `max` steps (a time-weighted mean).
fn rebin(series: &Series, max: usize) -> Series {
    let k = series.len().div_ceil(max.max(1)).max(1);
    series
        .chunks(k)
        .map(|c| {
            let len: f64 = c.iter().map(|b| b.1 - b.0).sum();
            let w = |f: BucketField| {
                if len > 0.0 {
                    c.iter().map(|b| f(b) * (b.1 - b.0)).sum::<f64>() / len
                } else {
                    0.0
                }
            };
            (c[0].0, c[c.len() - 1].1, w(&|b| b.2), w(&|b| b.3))
        })
        .collect()
}

/// Colour of fault marks on timelines.
const FAULT: RGBColor = RGBColor(200, 30, 30);

/// Busy fraction over time, one panel per run, with its faults shaded.
pub struct Timeline {
    /// `(run, partitions (label, colour, series))`.
    pub panels: Vec<(String, Vec<PartitionSeries>)>,
    /// Per run (same order): faults `(kind, at s, recovered at s)`.
    pub faults: Vec<Vec<(String, f64, Option<f64>)>>,
}

impl Chart for Timeline {
    fn stem(&self) -> String {
        "busy_timeline".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = sizes(root);
        let area = titled(
            root,
            "Device busy over time (solid: kernels; dashed: kernels + context switches)",
        )?;
        let cols = if self.panels.len() > 3 { 2 } else { 1 };
        let rows = self.panels.len().div_ceil(cols).max(1);
        let order: Vec<usize> = (0..rows * cols)
            .map(|i| (i % cols) * rows + i / cols)
            .collect();
        let cells = area.split_evenly((rows, cols));
        let small = (s.tick * 4 / 5).max(9);
        for (cell_i, panel) in cells.iter().enumerate() {
            let Some((run, parts)) = self.panels.get(order[cell_i]) else {
                continue;
            };
            let end = parts
                .iter()
                .flat_map(|p| p.2.iter().map(|b| b.1))
                .fold(0.0f64, f64::max)
                .max(1e-3);
            let mut chart = ChartBuilder::on(panel)
                .caption(run, font(s.caption * 4 / 5))
                .margin(6)
                .x_label_area_size(small * 3)
                .y_label_area_size(small * 4)
                .build_cartesian_2d(0.0..end, 0.0..105.0)
                .map_err(de)?;
            chart
                .configure_mesh()
                .x_desc("time, s")
                .y_desc("busy, %")
                .y_labels(3)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .x_label_formatter(&tick)
                .x_labels(6)
                .label_style(font(small))
                .axis_desc_style(font(small))
                .light_line_style(BLACK.mix(0.03))
                .max_light_lines(4)
                .bold_line_style(BLACK.mix(0.12))
                .draw()
                .map_err(de)?;
            // Faults: the time until recovery shaded, the strike marked with a line.
            let faults = self.faults.get(order[cell_i]).map_or(&[][..], |f| &f[..]);
            for (i, (_, at, back)) in faults.iter().enumerate() {
                let to = back.unwrap_or(end).min(end);
                let shade = FAULT.mix(0.12);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(*at, 0.0), (to, 105.0)],
                        shade.filled(),
                    )))
                    .map_err(de)?;
                let anno = chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(*at, 0.0), (*at, 105.0)],
                        FAULT.stroke_width(2),
                    )))
                    .map_err(de)?;
                if i == 0 {
                    anno.label("fault, shaded until recovered")
                        .legend(|(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 20, y + 5)], FAULT.mix(0.3).filled())
                        });
                }
            }
            for (label, color, series) in parts {
                let series = &rebin(series, 90);
                let step = |f: BucketField| -> Vec<(f64, f64)> {
                    series
                        .iter()
                        .flat_map(|b| [(b.0, f(b) * 100.0), (b.1, f(b) * 100.0)])
                        .collect()
                };
                line(&mut chart, step(&|b| b.2), *color, false, Some(label))?;
                if series.iter().any(|b| b.3 > 0.0) {
                    line(&mut chart, step(&|b| b.2 + b.3), *color, true, None)?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .label_font(font(small))
                .draw()
                .map_err(de)?;
        }
        Ok(())
    }
}

/// One series of a sweep curve.
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// `(x, mean, ci95 half-width)`, x increasing.
    pub points: Vec<(f64, f64, Option<f64>)>,
    /// Index of the knee in `points`.
    pub knee: Option<usize>,
}

/// A metric against the swept value: mean line, 95% CI band, knee marked.
pub struct Curves {
    /// Metric column.
    pub metric: String,
    /// x axis description.
    pub x_desc: String,
    /// y axis description.
    pub y_desc: String,
    /// Seeds per point (for the title).
    pub seeds: usize,
    /// Series.
    pub series: Vec<Curve>,
}

impl Chart for Curves {
    fn stem(&self) -> String {
        let clean: String = self
            .metric
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("sweep_{clean}")
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = sizes(root);
        let ci = if self.seeds > 1 {
            format!(", mean and 95% CI over {} seeds", self.seeds)
        } else {
            String::new()
        };
        let area = titled(root, &format!("{} vs {}{ci}", self.y_desc, self.x_desc))?;
        let pts = self.series.iter().flat_map(|c| c.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, m, h) in pts {
            let h = h.unwrap_or(0.0);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(m - h);
            y1 = y1.max(m + h);
        }
        if x1 <= x0 {
            x0 -= 1.0;
            x1 += 1.0;
        }
        let pad = ((y1 - y0) * 0.08).max(y1.abs() * 0.02).max(1e-9);
        let (y0, y1) = (
            if y0 >= 0.0 {
                (y0 - pad).max(0.0)
            } else {
                y0 - pad
            },
            y1 + pad * 2.0,
        );
        let mut chart = ChartBuilder::on(&area)
            .margin(14)
            .x_label_area_size(s.axis * 3)
            .y_label_area_size(s.axis * 5)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(de)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style(font(s.tick))
            .axis_desc_style(font(s.axis))
            .light_line_style(BLACK.mix(0.03))
            .max_light_lines(4)
            .bold_line_style(BLACK.mix(0.15))
            .draw()
            .map_err(de)?;
        for c in &self.series {
            let color = c.color;
            if c.points.iter().any(|p| p.2.is_some()) {
                let mut band: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .map(|p| (p.0, p.1 + p.2.unwrap_or(0.0)))
                    .collect();
                band.extend(
                    c.points
                        .iter()
                        .rev()
                        .map(|p| (p.0, p.1 - p.2.unwrap_or(0.0))),
                );
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(de)?;
            }
            let line_pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, p.1)).collect();
            line(&mut chart, line_pts.clone(), color, false, Some(&c.label))?;
            chart
                .draw_series(line_pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(de)?;
            if let Some(k) = c.knee {
                let (kx, ky) = line_pts[k];
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(kx, y0), (kx, y1)],
                        8,
                        6,
                        color.stroke_width(1),
                    ))
                    .map_err(de)?;
                chart
                    .draw_series([EmptyElement::at((kx, ky))
                        + Circle::new((0, 0), 9, color.stroke_width(3))
                        + Text::new(
                            format!("knee {}", trim(kx)),
                            (12, -(s.tick as i32) - 4),
                            font(s.tick).color(&color),
                        )])
                    .map_err(de)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight, s.tick)
    }
}

/// A tick label: whole numbers without decimals, others with as few as their size needs.
pub(crate) fn tick(v: &f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Description with unit of a metric column (units follow the field-name suffixes).
pub fn describe_metric(m: &str) -> String {
    if let Some(rest) = m.strip_prefix("latency_ms.") {
        let mut it = rest.splitn(2, '.');
        let stage = it.next().unwrap_or(rest);
        let stat = it.next().unwrap_or("");
        return format!("{stage} latency {stat}, ms");
    }
    match m {
        "throughput_per_gpu_rps" => return "throughput per GPU, req/s".into(),
        "throughput_rps" => return "throughput, req/s".into(),
        "success_rate" => return "success rate (fraction)".into(),
        _ => {}
    }
    for (suffix, unit) in [
        ("_rps", "req/s"),
        ("_ms", "ms"),
        ("_us", "us"),
        ("_s", "s"),
        ("_gb", "GB"),
        ("_fraction", "fraction"),
    ] {
        if let Some(base) = m.strip_suffix(suffix) {
            return format!("{}, {unit}", base.replace('_', " "));
        }
    }
    m.to_string()
}

/// The charts of a run or study folder.
pub struct StudyCharts {
    /// Throughput per GPU by configuration and load.
    pub bars: Vec<GroupedBars>,
    /// Latency per stage.
    pub stages: StageBoxes,
    /// Latency CDFs (when quantiles were written).
    pub cdf: Option<Cdf>,
    /// Busy timeline (when timelines were written).
    pub timeline: Option<Timeline>,
}

fn ordered<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.iter().any(|o| o == i) {
            out.push(i.to_string());
        }
    }
    out
}

fn no_data(dir: &Path, chart: &str, reason: &str) -> PlotError {
    PlotError::NoData {
        dir: dir.to_path_buf(),
        chart: chart.into(),
        reason: reason.into(),
    }
}

/// Build the charts of a study folder; a chart with nothing to draw is an error.
pub fn study_charts(dir: &Path, d: &StudyData) -> Result<StudyCharts, PlotError> {
    if d.runs.is_empty() {
        return Err(no_data(dir, "any chart", "summary.json has no runs"));
    }
    let configs = ordered(d.runs.iter().map(|r| r.config.as_str()));
    let loads = ordered(d.runs.iter().map(|r| r.load.as_str()));
    let mut pal = Palette::new(configs.iter().map(String::as_str));
    let mean_of = |c: &str, l: &str| {
        let xs: Vec<f64> = d
            .runs
            .iter()
            .filter(|r| r.config == c && r.load == l)
            .map(|r| r.throughput_per_gpu_rps)
            .collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    let bars = GroupedBars {
        stem: "throughput_per_gpu".into(),
        title: "Throughput per GPU by configuration and load".into(),
        x_desc: "load".into(),
        y_desc: "throughput per GPU, req/s".into(),
        groups: loads.clone(),
        series: configs.iter().map(|c| (c.clone(), pal.color(c))).collect(),
        values: configs
            .iter()
            .map(|c| loads.iter().map(|l| mean_of(c, l)).collect())
            .collect(),
    };
    let mut all_bars = vec![bars];
    if let Some((prices, source)) = &d.prices {
        // Requests per dollar: req/s per GPU x 3600 / dollars per GPU-hour.
        let per_dollar = |c: &str, l: &str| {
            let xs: Vec<f64> = d
                .runs
                .iter()
                .filter(|r| r.config == c && r.load == l)
                .filter_map(|r| {
                    prices
                        .get(&r.name)
                        .map(|usd| r.throughput_per_gpu_rps * 3600.0 / usd)
                })
                .collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        let values: Vec<Vec<Option<f64>>> = configs
            .iter()
            .map(|c| loads.iter().map(|l| per_dollar(c, l)).collect())
            .collect();
        if values.iter().flatten().all(Option::is_none) {
            return Err(no_data(
                dir,
                "requests_per_dollar",
                "prices.json prices none of the runs of summary.json",
            ));
        }
        all_bars.push(GroupedBars {
            stem: "requests_per_dollar".into(),
            title: format!("Requests per dollar (prices: {source})"),
            x_desc: "the runs' load label (a GPU in the hardware study)".into(),
            y_desc: "requests per dollar (req/s per GPU x 3600 / $ per GPU-hour)".into(),
            groups: loads.clone(),
            series: configs.iter().map(|c| (c.clone(), pal.color(c))).collect(),
            values,
        });
    }
    let has_latency = |r: &RunInfo| r.stages.iter().any(|s| s.1.is_some());
    if !d.runs.iter().any(has_latency) {
        return Err(no_data(
            dir,
            "latency_by_stage",
            "no run has a successful request, so there is no latency to draw",
        ));
    }
    let stage_names: Vec<String> = d.runs[0].stages.iter().map(|s| s.0.to_string()).collect();
    let facets = loads
        .iter()
        .filter_map(|l| {
            let series: Vec<_> = d
                .runs
                .iter()
                .filter(|r| &r.load == l && has_latency(r))
                .map(|r| {
                    (
                        r.config.clone(),
                        pal.color(&r.config),
                        r.stages.iter().map(|s| s.1).collect(),
                    )
                })
                .collect();
            (!series.is_empty()).then(|| (format!("load: {l}"), series))
        })
        .collect();
    let stages = StageBoxes {
        facets,
        stages: stage_names.clone(),
    };
    let cdf = match &d.quantiles {
        None => None,
        Some(q) => {
            let facets: Vec<(String, Vec<CdfLine>)> = stage_names
                .iter()
                .filter_map(|st| {
                    let lines: Vec<CdfLine> = d
                        .runs
                        .iter()
                        .filter_map(|r| {
                            let pts = q.get(&r.name)?.get(st)?;
                            let li = loads.iter().position(|l| l == &r.load).unwrap_or(0);
                            Some(CdfLine {
                                label: r.name.clone(),
                                color: pal.color(&r.config),
                                dashed: li % 2 == 1,
                                points: pts.iter().map(|&(p, ms)| (ms, p)).collect(),
                            })
                        })
                        .filter(|l| !l.points.is_empty())
                        .collect();
                    (!lines.is_empty()).then(|| (st.clone(), lines))
                })
                .collect();
            if facets.is_empty() {
                return Err(no_data(
                    dir,
                    "latency_cdf",
                    "latency_quantiles.csv has no quantiles for these runs",
                ));
            }
            Some(Cdf { facets })
        }
    };
    let timeline = match &d.timelines {
        None => None,
        Some(t) => {
            let panels: Vec<_> = d
                .runs
                .iter()
                .filter_map(|r| {
                    let parts = t.get(&r.name)?;
                    Some((
                        r.name.clone(),
                        parts
                            .iter()
                            .enumerate()
                            .map(|(i, (label, series))| {
                                let name = r.partitions.get(i).unwrap_or(label);
                                (name.clone(), Palette::nth(i), series.clone())
                            })
                            .collect::<Vec<_>>(),
                    ))
                })
                .filter(|(_, parts)| parts.iter().any(|p| !p.2.is_empty()))
                .collect();
            if panels.is_empty() {
                return Err(no_data(
                    dir,
                    "busy_timeline",
                    "timeline.csv has no buckets for these runs",
                ));
            }
            let faults = panels
                .iter()
                .map(|(name, _)| {
                    d.runs
                        .iter()
                        .find(|r| &r.name == name)
                        .map(|r| r.faults.clone())
                        .unwrap_or_default()
                })
                .collect();
            Some(Timeline { panels, faults })
        }
    };
    Ok(StudyCharts {
        bars: all_bars,
        stages,
        cdf,
        timeline,
    })
}

/// The charts of a sweep folder.
pub struct SweepCharts {
    /// One per metric.
    pub curves: Vec<Curves>,
    /// Throughput per GPU by series and swept value.
    pub bars: Vec<GroupedBars>,
}

/// Build the charts of a sweep folder; a sweep whose runs all failed is an error.
pub fn sweep_charts(dir: &Path, d: &SweepData) -> Result<SweepCharts, PlotError> {
    if d.points.is_empty() {
        let why = match d.first_error() {
            Some(e) => format!("every run of the sweep failed; the first: {e}"),
            None => "the sweep has no successful run".into(),
        };
        return Err(no_data(dir, "sweep charts", &why));
    }
    let available: Vec<&str> = d.points[0].stats.iter().map(|(m, _)| m.as_str()).collect();
    for m in &d.metrics {
        if !available.contains(&m.as_str()) {
            return Err(PlotError::Input(crate::error::InputError::invalid(
                &dir.join("sweep.json"),
                "sweep.plot.metrics",
                format!("\"{m}\""),
                &format!(
                    "numeric columns of runs.csv, e.g. {}",
                    available
                        .iter()
                        .take(12)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )));
        }
    }
    let groups = ordered(
        d.points
            .iter()
            .map(|p| d.group_of(p))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let mut pal = Palette::new(groups.iter().map(String::as_str));
    let seeds = d.record.sweep.seeds.len();
    let stat = |p: &super::super::sweep::table::PointRow, m: &str| {
        p.stats.iter().find(|(c, _)| c == m).and_then(|(_, s)| *s)
    };
    let mut curves = Vec::new();
    if let Some(x) = &d.x {
        for m in &d.metrics {
            let series = groups
                .iter()
                .filter_map(|g| {
                    let mut pts: Vec<(f64, f64, Option<f64>)> = d
                        .points
                        .iter()
                        .filter(|p| &d.group_of(p) == g)
                        .filter_map(|p| {
                            let xv = p.params.get(x)?.as_f64()?;
                            let (mean, h) = stat(p, m)?;
                            Some((xv, mean, h))
                        })
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    if pts.is_empty() {
                        return None;
                    }
                    let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
                    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
                    Some(Curve {
                        label: g.clone(),
                        color: pal.color(g),
                        knee: knee(&xs, &ys),
                        points: pts,
                    })
                })
                .collect::<Vec<_>>();
            if !series.is_empty() {
                curves.push(Curves {
                    metric: m.clone(),
                    x_desc: x.clone(),
                    y_desc: describe_metric(m),
                    seeds,
                    series,
                });
            }
        }
    }
    let m = "throughput_per_gpu_rps";
    let mut bars = Vec::new();
    if available.contains(&m) {
        let (cats, series_names): (Vec<String>, Vec<String>) = match &d.x {
            Some(x) => {
                let xs = ordered(
                    d.points
                        .iter()
                        .filter_map(|p| p.params.get(x).map(cell))
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                );
                (xs, groups.clone())
            }
            None => (groups.clone(), vec![d.record.sweep.name.clone()]),
        };
        let value = |series: &str, cat: &str| {
            d.points
                .iter()
                .find(|p| match &d.x {
                    Some(x) => {
                        d.group_of(p) == series && p.params.get(x).map(cell).as_deref() == Some(cat)
                    }
                    None => d.group_of(p) == cat,
                })
                .and_then(|p| stat(p, m))
                .map(|s| s.0)
        };
        bars.push(GroupedBars {
            stem: "throughput_per_gpu".into(),
            title: format!(
                "Throughput per GPU by configuration and {}",
                d.x.as_deref().unwrap_or("point")
            ),
            x_desc: d.x.clone().unwrap_or_else(|| "point".into()),
            y_desc: "throughput per GPU, req/s (mean over seeds)".into(),
            groups: cats.clone(),
            series: series_names
                .iter()
                .map(|sn| (sn.clone(), pal.color(sn)))
                .collect(),
            values: series_names
                .iter()
                .map(|sn| cats.iter().map(|c| value(sn, c)).collect())
                .collect(),
        });
    }
    Ok(SweepCharts { curves, bars })
}
