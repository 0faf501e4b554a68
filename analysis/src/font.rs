//! The embedded font. plotters' `ab_glyph` feature has no system font lookup: text is measured
//! (SVG and PNG) and rasterised (PNG) only with fonts registered at runtime, so we carry one.
//! DejaVu Sans, licence in `assets/LICENSE-DejaVu.txt`.

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::AnalysisError;

/// The family name every chart uses; SVG output names it in `font-family`, so browsers pick
/// their own sans-serif font and the page stays self-contained.
pub(crate) const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the embedded font once per process; cheap to call before every drawing.
pub(crate) fn ensure_registered() -> Result<(), AnalysisError> {
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the embedded DejaVuSans.ttf is not a valid font".to_string())
        })
        .clone()
        .map_err(|message| AnalysisError::Plot { what: "font registration".into(), message })
}
