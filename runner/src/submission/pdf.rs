//! Rendering a submitted PDF into sheets for the vision model, in-process and in pure Rust
//! (`hayro`: no external program, no system library, so it runs in the distroless image).
//!
//! Pages are rendered one at a time at 300 DPI (the original worker's resolution), or lower
//! where that would exceed the page box of [`super::pages`], converted to greyscale and handed
//! to the [`SheetBuilder`] at once: peak memory is one rendered page plus one sheet, whatever
//! the document's length or page size. A deadline is checked between pages. Pure CPU work:
//! callers run it on a blocking thread.

use std::time::Instant;

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::{LoadPdfError, Pdf};
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{render, PixmapSettings, RenderCache, RenderSettings};
use image::GrayImage;

use super::pages::{SheetBuilder, SheetError, Sheets, MAX_PAGES, MAX_PAGE_HEIGHT, MAX_WIDTH};

/// The original worker's rendering resolution; pages are never rendered finer.
pub const RENDER_DPI: f32 = 300.0;
/// PDF user space units per inch.
const POINTS_PER_INCH: f32 = 72.0;

/// Why a PDF could not be made into sheets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    /// The document needs a password to open.
    #[error("the PDF is password-protected")]
    Encrypted,
    /// The bytes are not a PDF this renderer can read.
    #[error("the PDF cannot be read (damaged or not a PDF)")]
    Unreadable,
    /// The document has no pages.
    #[error("the PDF has no pages")]
    NoPages,
    /// Rendering did not finish before the deadline (after `pages` pages).
    #[error("rendering the PDF took too long (stopped after {pages} pages)")]
    TooSlow {
        /// Pages rendered before the deadline.
        pages: usize,
    },
    /// A sheet could not be encoded.
    #[error(transparent)]
    Sheet(#[from] SheetError),
}

/// The rendered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPdf {
    /// The sheets (at most [`MAX_PAGES`] pages).
    pub sheets: Sheets,
    /// Pages in the document (may exceed the pages rendered).
    pub pages_total: usize,
}

/// The scale (pixels per point) for a page of `width` × `height` points: [`RENDER_DPI`], or
/// less where the page would not fit [`MAX_WIDTH`] × [`MAX_PAGE_HEIGHT`].
pub fn page_scale(width: f32, height: f32) -> f32 {
    let dpi_scale = RENDER_DPI / POINTS_PER_INCH;
    (MAX_WIDTH as f32 / finite_positive(width))
        .min(MAX_PAGE_HEIGHT as f32 / finite_positive(height))
        .min(dpi_scale)
}

/// Whether a page of `width` × `height` points renders, at [`page_scale`], to at least one
/// pixel and at most the page box a side (hayro sizes its pixmap from the same numbers).
pub fn renders_within_page_box(width: f32, height: f32) -> bool {
    if !(width.is_finite() && height.is_finite() && width > 0.0 && height > 0.0) {
        return false;
    }
    let scale = page_scale(width, height);
    let (w, h) = (width * scale, height * scale);
    (1.0..=MAX_WIDTH as f32 + 1.0).contains(&w) && (1.0..=MAX_PAGE_HEIGHT as f32 + 1.0).contains(&h)
}

fn finite_positive(v: f32) -> f32 {
    if v.is_finite() && v >= 1.0 {
        v
    } else {
        1.0
    }
}

/// Renders up to [`MAX_PAGES`] pages of `bytes` into sheets, stopping with
/// [`PdfError::TooSlow`] when `deadline` passes between two pages.
pub fn render_pdf(bytes: Vec<u8>, deadline: Instant) -> Result<RenderedPdf, PdfError> {
    let pdf = Pdf::new(bytes).map_err(|e| match e {
        LoadPdfError::Decryption(_) => PdfError::Encrypted,
        LoadPdfError::Invalid => PdfError::Unreadable,
    })?;
    let pages = pdf.pages();
    if pages.is_empty() {
        return Err(PdfError::NoPages);
    }
    let interpreter = InterpreterSettings::default();
    let settings = RenderSettings::default();
    let mut builder = SheetBuilder::new();
    for page in pages.iter().take(MAX_PAGES) {
        if Instant::now() >= deadline {
            return Err(PdfError::TooSlow {
                pages: builder.pages(),
            });
        }
        let (width, height) = page.render_dimensions();
        if !renders_within_page_box(width, height) {
            // A sliver (under one pixel across) or a page size no real document has (not
            // finite, beyond the box even when scaled): nothing legible, and hayro would size
            // its pixmap from these numbers. A blank placeholder keeps the page count.
            builder.push(GrayImage::from_pixel(1, 1, image::Luma([255])))?;
            continue;
        }
        let scale = page_scale(width, height);
        // A cache per page: hayro's cache keeps every decoded image of the document, so one
        // shared across pages would make memory grow with the page count.
        let cache = RenderCache::new();
        let pixmap = render(
            page,
            &cache,
            &interpreter,
            &settings,
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        builder.push(greyscale(
            u32::from(pixmap.width()),
            u32::from(pixmap.height()),
            pixmap.data_as_u8_slice(),
        ))?;
    }
    Ok(RenderedPdf {
        sheets: builder.finish()?,
        pages_total: pages.len(),
    })
}

/// Greyscale of an RGBA buffer on an opaque background (ITU-R BT.601 luma).
fn greyscale(width: u32, height: u32, rgba: &[u8]) -> GrayImage {
    let luma: Vec<u8> = rgba
        .chunks_exact(4)
        .map(|px| {
            let y = 299 * u32::from(px[0]) + 587 * u32::from(px[1]) + 114 * u32::from(px[2]);
            (y / 1000) as u8
        })
        .collect();
    GrayImage::from_raw(width.max(1), height.max(1), luma)
        .unwrap_or_else(|| GrayImage::from_pixel(1, 1, image::Luma([255])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a4_renders_below_300_dpi_to_fit_the_page_box() {
        let scale = page_scale(595.0, 842.0);
        assert!((scale * 595.0 - MAX_WIDTH as f32).abs() <= 1.0, "{scale}");
        let small = page_scale(100.0, 100.0);
        assert!(
            (small - RENDER_DPI / POINTS_PER_INCH).abs() < 1e-6,
            "300 DPI cap"
        );
    }

    #[test]
    fn huge_or_odd_pages_stay_inside_the_page_box() {
        for (w, h) in [
            (14_400.0, 14_400.0),
            (1.0, 14_400.0),
            (14_400.0, 1.0),
            (f32::NAN, 800.0),
            (0.0, 0.0),
        ] {
            let s = page_scale(w, h);
            let (pw, ph) = (finite_positive(w) * s, finite_positive(h) * s);
            assert!(pw <= MAX_WIDTH as f32 + 1.0, "{w}x{h}: {pw}");
            assert!(ph <= MAX_PAGE_HEIGHT as f32 + 1.0, "{w}x{h}: {ph}");
            assert!(s > 0.0);
        }
    }

    #[test]
    fn only_page_sizes_that_fit_the_box_are_rendered() {
        assert!(renders_within_page_box(595.0, 842.0));
        assert!(renders_within_page_box(14_400.0, 14_400.0));
        for (w, h) in [
            (f32::INFINITY, 842.0),
            (f32::NAN, 842.0),
            (0.0, 842.0),
            (-595.0, 842.0),
            (0.01, 842.0),
        ] {
            assert!(!renders_within_page_box(w, h), "{w}x{h}");
        }
    }

    #[test]
    fn pages_of_absurd_size_never_make_a_huge_pixmap() {
        for media_box in ["0 0 3.4e38 3.4e38", "0 0 1e30 842", "0 0 595 1e-30"] {
            let pdf = String::from_utf8(learning_tests::pdf::numbered_a4(1))
                .unwrap()
                .replace("0 0 595 842", media_box);
            // The cross-reference offsets shift; hayro repairs the table by scanning. A page
            // hayro refuses is no page; one it accepts is rendered inside the box or blank.
            match render_pdf(pdf.into_bytes(), far()) {
                Ok(rendered) => {
                    let sheet = image::load_from_memory(&rendered.sheets.images[0]).unwrap();
                    assert!(
                        sheet.width() <= MAX_WIDTH && sheet.height() <= MAX_PAGE_HEIGHT,
                        "{media_box}"
                    );
                }
                Err(e) => assert!(
                    matches!(e, PdfError::NoPages | PdfError::Unreadable),
                    "{media_box}: {e}"
                ),
            }
        }
    }

    #[test]
    fn garbage_is_unreadable() {
        let far = Instant::now() + std::time::Duration::from_secs(60);
        assert_eq!(
            render_pdf(b"%PDF-1.7\nnot really".to_vec(), far),
            Err(PdfError::Unreadable)
        );
    }

    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(120)
    }

    #[test]
    fn pages_are_rendered_two_to_a_sheet_with_their_ink() {
        let rendered = render_pdf(learning_tests::pdf::numbered_a4(3), far()).unwrap();
        assert_eq!(rendered.pages_total, 3);
        assert_eq!(
            (rendered.sheets.pages, rendered.sheets.images.len()),
            (3, 2)
        );
        let sheet = image::load_from_memory(&rendered.sheets.images[0])
            .unwrap()
            .into_luma8();
        let page_height = (842.0 * page_scale(595.0, 842.0)) as u32;
        assert_eq!(sheet.width(), MAX_WIDTH);
        assert!(
            sheet
                .height()
                .abs_diff(2 * page_height + super::super::pages::PAGE_GAP)
                <= 2
        );
        // The black bar near the top of page 1: 108 to 120 pt from the top edge.
        let s = page_scale(595.0, 842.0);
        let bar_y = (114.0 * s) as u32;
        assert_eq!(
            sheet.get_pixel(MAX_WIDTH / 2, bar_y).0,
            [0],
            "the bar is black"
        );
        assert_eq!(
            sheet.get_pixel(MAX_WIDTH / 2, page_height / 2).0,
            [255],
            "paper is white"
        );
        let dark_text_pixels = (0..sheet.width())
            .flat_map(|x| (0..((80.0 * s) as u32)).map(move |y| (x, y)))
            .filter(|&(x, y)| sheet.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(
            dark_text_pixels > 500,
            "the text line has ink: {dark_text_pixels}"
        );
    }

    #[test]
    fn password_protected_and_empty_documents_are_refused() {
        let pages = [learning_tests::pdf::PdfPage::a4("geheim")];
        assert_eq!(
            render_pdf(learning_tests::pdf::encrypted_document(&pages), far()),
            Err(PdfError::Encrypted)
        );
        assert_eq!(
            render_pdf(learning_tests::pdf::document(&[]), far()),
            Err(PdfError::NoPages)
        );
    }

    #[test]
    fn a_passed_deadline_stops_between_pages() {
        let past = Instant::now();
        assert_eq!(
            render_pdf(learning_tests::pdf::numbered_a4(2), past),
            Err(PdfError::TooSlow { pages: 0 })
        );
    }

    #[test]
    fn greyscale_weights_the_channels() {
        let img = greyscale(2, 1, &[255, 255, 255, 255, 255, 0, 0, 255]);
        assert_eq!(img.get_pixel(0, 0).0, [255]);
        assert_eq!(img.get_pixel(1, 0).0, [76]);
    }
}
