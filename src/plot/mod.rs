//! Report charts (plotters), PNG and SVG, from a results folder.
//!
//! - [`style`]: the embedded font, sizes and palette.
//! - [`data`]: reading `summary.json`, `latency_quantiles.csv`, `timeline.csv`, `sweep.json`.
//! - [`charts`]: the charts, each drawn by one function for both formats.
//!
//! From a `run`/`study` folder: throughput per GPU by configuration and load (grouped bars),
//! latency per stage (p50 bars, p95 ticks, p99 whiskers) per configuration, latency CDFs, and
//! the device busy fraction over time. From a `sweep`/`merge` folder: one curve chart per
//! metric (mean over seeds, 95% CI band, knee marked) and throughput per GPU grouped by the
//! swept value. A chart with nothing to draw is an error, never a blank image; no file is
//! written unless every chart rendered.

pub mod charts;
pub mod data;
pub mod pareto;
pub mod style;

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use thiserror::Error;

use crate::config::write_atomic_all;
use crate::error::InputError;

/// Why charts could not be made.
#[derive(Debug, Error)]
pub enum PlotError {
    /// A results file is missing or malformed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A chart has nothing to draw.
    #[error("{}: cannot draw {chart}: {reason}", dir.display())]
    NoData {
        /// The results folder.
        dir: PathBuf,
        /// The chart.
        chart: String,
        /// Why.
        reason: String,
    },
    /// plotters failed (a bug or an impossible size).
    #[error("{chart}: drawing failed: {message}")]
    Draw {
        /// The chart.
        chart: String,
        /// plotters' message.
        message: String,
    },
}

/// Image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1200,
            height: 800,
        }
    }
}

impl Options {
    /// Parse `WxH` (each 200..=8000).
    pub fn parse_size(s: &str) -> Result<Options, String> {
        let err =
            || format!("--size {s}: expected WIDTHxHEIGHT, each 200..=8000 pixels, e.g. 1200x800");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
        let w: u32 = w.trim().parse().map_err(|_| err())?;
        let h: u32 = h.trim().parse().map_err(|_| err())?;
        if !(200..=8000).contains(&w) || !(200..=8000).contains(&h) {
            return Err(err());
        }
        Ok(Options {
            width: w,
            height: h,
        })
    }
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    /// File stem, e.g. `latency_cdf`.
    fn stem(&self) -> String;
    /// Draw on `root` (already white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// A plotters error as text.
pub fn de<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Render `chart` to PNG bytes and SVG text.
pub fn render<C: Chart>(chart: &C, opts: Options) -> Result<(Vec<u8>, String), PlotError> {
    style::init();
    let (w, h) = (opts.width, opts.height);
    let draw_err = |message: String| PlotError::Draw {
        chart: chart.stem(),
        message,
    };
    let mut rgb = vec![0u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(de(e)))?;
        chart.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(de(e)))?;
    }
    let img = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| draw_err("buffer size does not match the image".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| draw_err(e.to_string()))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(de(e)))?;
        chart.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(de(e)))?;
    }
    Ok((png, svg))
}

/// Charts written, and charts skipped with the reason.
#[derive(Debug, Default)]
pub struct Plotted {
    /// Files written (PNG and SVG of each chart).
    pub files: Vec<PathBuf>,
    /// Charts not drawn because their input file is absent.
    pub skipped: Vec<String>,
}

/// Draw every chart the results in `results` support into `out` (created if needed).
pub fn plot_results(results: &Path, out: &Path, opts: Options) -> Result<Plotted, PlotError> {
    let mut rendered: Vec<(String, Vec<u8>, String)> = Vec::new();
    let mut skipped = Vec::new();
    let mut add = |stem: String, r: (Vec<u8>, String)| rendered.push((stem, r.0, r.1));
    match data::kind(results)? {
        data::Kind::Study => {
            let d = data::load_study(results)?;
            let charts = charts::study_charts(results, &d)?;
            for c in &charts.bars {
                add(c.stem(), render(c, opts)?);
            }
            add(charts.stages.stem(), render(&charts.stages, opts)?);
            match &charts.cdf {
                Some(c) => add(c.stem(), render(c, opts)?),
                None => skipped.push("latency_cdf (no latency_quantiles.csv)".to_string()),
            }
            match &charts.timeline {
                Some(c) => add(c.stem(), render(c, opts)?),
                None => skipped.push("busy_timeline (no timeline.csv)".to_string()),
            }
        }
        data::Kind::Sweep => {
            let d = data::load_sweep(results)?;
            let charts = charts::sweep_charts(results, &d)?;
            for c in &charts.curves {
                add(c.stem(), render(c, opts)?);
            }
            for c in &charts.bars {
                add(c.stem(), render(c, opts)?);
            }
            if charts.curves.is_empty() {
                skipped.push("sweep curves (no swept key with several numeric values)".into());
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| InputError::write(out, e))?;
    let mut files = Vec::new();
    let mut writes = Vec::new();
    for (stem, png, svg) in rendered {
        let p = out.join(format!("{stem}.png"));
        let s = out.join(format!("{stem}.svg"));
        files.push(p.clone());
        files.push(s.clone());
        writes.push((p, png));
        writes.push((s, svg.into_bytes()));
    }
    write_atomic_all(&writes)?;
    Ok(Plotted { files, skipped })
}
