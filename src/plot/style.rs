//! The look shared by every chart: the embedded font, sizes, and one palette in which a
//! configuration keeps its colour across charts.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor, register_font};

/// DejaVu Sans (see `assets/fonts/README.md`): compiled in, so charts need no system fonts.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Family name the charts ask for.
pub const FAMILY: &str = "sans-serif";

/// Register the embedded font (once per process).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("invariant: the embedded font parses"));
    });
}

/// Font sizes in pixels, scaled to the image height (values for 800 px).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Chart title.
    pub title: u32,
    /// Panel captions.
    pub caption: u32,
    /// Axis descriptions.
    pub axis: u32,
    /// Tick labels and legends.
    pub tick: u32,
}

impl Sizes {
    /// Sizes for an image `height` pixels tall.
    pub fn for_height(height: u32) -> Sizes {
        let s = |px: f64| ((px * f64::from(height) / 800.0).round() as u32).max(9);
        Sizes {
            title: s(30.0),
            caption: s(22.0),
            axis: s(19.0),
            tick: s(16.0),
        }
    }
}

/// Okabe-Ito colour-blind-safe palette, in the order new names take them.
const OKABE_ITO: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(120, 94, 240),  // violet
];

/// Grey for the dedicated baseline.
const GREY: RGBColor = RGBColor(110, 110, 110);

/// Colours by name: the sharing modes keep fixed colours (MIG blue, time-slicing orange,
/// dedicated/baseline grey, MPS green); other names take the remaining colours in order of
/// first appearance, so one chart set is consistent.
#[derive(Debug, Default)]
pub struct Palette {
    names: Vec<String>,
    /// Distinct MIG-named series in order of first appearance: the first is MIG blue, the
    /// others sky blue (two MIG layouts side by side stay told apart).
    mig_names: Vec<String>,
}

impl Palette {
    /// A palette that assigns colours to `names` in this order.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Palette {
        let mut p = Palette::default();
        for n in names {
            p.color(n);
        }
        p
    }

    fn fixed(name: &str) -> Option<RGBColor> {
        let n = name.to_ascii_lowercase();
        if n.starts_with("mig") {
            Some(OKABE_ITO[0])
        } else if n.starts_with("time-slicing") || n.starts_with("timeslicing") {
            Some(OKABE_ITO[1])
        } else if n.starts_with("mps") {
            Some(OKABE_ITO[2])
        } else if n.starts_with("baseline") || n.starts_with("dedicated") {
            Some(GREY)
        } else {
            None
        }
    }

    /// The colour of `name`.
    pub fn color(&mut self, name: &str) -> RGBColor {
        if name.to_ascii_lowercase().starts_with("mig") {
            let i = match self.mig_names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.mig_names.push(name.to_string());
                    self.mig_names.len() - 1
                }
            };
            return if i == 0 { OKABE_ITO[0] } else { OKABE_ITO[4] };
        }
        if let Some(c) = Self::fixed(name) {
            return c;
        }
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        };
        // Skip the colours reserved for the sharing modes.
        OKABE_ITO[3 + i % (OKABE_ITO.len() - 3)]
    }

    /// The i-th colour of the palette (for series without a meaningful name).
    pub fn nth(i: usize) -> RGBColor {
        OKABE_ITO[i % OKABE_ITO.len()]
    }
}
