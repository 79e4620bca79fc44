//! Sheets for the vision model: document pages (rendered PDF pages or pre-rendered page
//! images) are converted to greyscale, scaled down to a common width, and stacked top to
//! bottom on white with a white gap, [`PAGES_PER_SHEET`] pages to a sheet. Each finished
//! sheet is encoded as PNG at once, so memory holds one page and one sheet at a time, never
//! the whole document. Pure (pixels and bytes in, bytes out).

use std::io::Cursor;

use image::{imageops, GrayImage, ImageFormat, Luma};

/// The most pages of one document that are used (the original worker's limit).
pub const MAX_PAGES: usize = 100;
/// Pages stacked into one image for one vision call. Vision models shrink every image to a
/// fixed pixel budget (Qwen2.5-VL in Ollama: about one megapixel), so a tall stack of many
/// pages becomes unreadable; two A4 pages still keep handwriting legible.
pub const PAGES_PER_SHEET: usize = 2;
/// The most sheets of one document (and so the most vision calls it can cost).
pub const MAX_SHEETS: usize = MAX_PAGES.div_ceil(PAGES_PER_SHEET);
/// Pages wider than this are scaled down (about 220 DPI across an A4 page).
pub const MAX_WIDTH: u32 = 1800;
/// Pages taller than this are scaled down (twice the width: every paper format fits).
pub const MAX_PAGE_HEIGHT: u32 = 2 * MAX_WIDTH;
/// White rows between pages.
pub const PAGE_GAP: u32 = 24;
/// The tallest sheet: [`PAGES_PER_SHEET`] pages of the greatest height and the gaps.
pub const MAX_SHEET_HEIGHT: u32 =
    PAGES_PER_SHEET as u32 * MAX_PAGE_HEIGHT + (PAGES_PER_SHEET as u32 - 1) * PAGE_GAP;
/// Decoding limits of one page image: no page may make the decoder allocate more than this.
const MAX_PAGE_ALLOC: u64 = 192 * 1024 * 1024;
/// Largest side of a page image that is decoded at all.
const MAX_PAGE_SIDE: u32 = 20_000;

/// Why pages could not be made into sheets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SheetError {
    /// No page given.
    #[error("no pages")]
    NoPages,
    /// A page image is not a decodable PNG or too large to decode (1-based index).
    #[error("page {0} is not a valid PNG image within the size limits")]
    BadPage(usize),
    /// Encoding a sheet failed.
    #[error("could not encode the page image: {0}")]
    Encode(String),
}

/// The sheets of one document, each an encoded greyscale PNG, in page order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sheets {
    /// PNG bytes, one per sheet.
    pub images: Vec<Vec<u8>>,
    /// Pages placed on the sheets.
    pub pages: usize,
}

impl Sheets {
    /// Total encoded size in bytes.
    pub fn byte_len(&self) -> usize {
        self.images.iter().map(Vec::len).sum()
    }
}

/// Collects pages one at a time into sheets of [`PAGES_PER_SHEET`].
#[derive(Debug, Default)]
pub struct SheetBuilder {
    current: Vec<GrayImage>,
    done: Sheets,
}

impl SheetBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        SheetBuilder::default()
    }

    /// Pages added so far.
    pub fn pages(&self) -> usize {
        self.done.pages + self.current.len()
    }

    /// Whether the page cap is reached.
    pub fn is_full(&self) -> bool {
        self.pages() >= MAX_PAGES
    }

    /// Adds one page (any size: scaled to fit [`MAX_WIDTH`] × [`MAX_PAGE_HEIGHT`]). Pages past
    /// [`MAX_PAGES`] are ignored.
    pub fn push(&mut self, page: GrayImage) -> Result<(), SheetError> {
        if self.is_full() {
            return Ok(());
        }
        self.current.push(fit_page(page));
        if self.current.len() == PAGES_PER_SHEET {
            self.flush()?;
        }
        Ok(())
    }

    /// Finishes the last sheet.
    pub fn finish(mut self) -> Result<Sheets, SheetError> {
        self.flush()?;
        if self.done.images.is_empty() {
            return Err(SheetError::NoPages);
        }
        Ok(self.done)
    }

    fn flush(&mut self) -> Result<(), SheetError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let pages = std::mem::take(&mut self.current);
        self.done.pages += pages.len();
        self.done.images.push(encode_png(&stack(&pages))?);
        Ok(())
    }
}

/// Stacks pages top to bottom, narrower pages padded with white on the right.
fn stack(pages: &[GrayImage]) -> GrayImage {
    let width = pages.iter().map(GrayImage::width).max().unwrap_or(1);
    let gaps = PAGE_GAP * (pages.len().saturating_sub(1)) as u32;
    let height = pages.iter().map(GrayImage::height).sum::<u32>() + gaps;
    let mut canvas = GrayImage::from_pixel(width, height.max(1), Luma([255]));
    let mut y = 0u32;
    for page in pages {
        imageops::replace(&mut canvas, page, 0, i64::from(y));
        y += page.height() + PAGE_GAP;
    }
    canvas
}

/// The size a `width` × `height` page gets: scaled down (never up) to fit `max_w` × `max_h`,
/// keeping the aspect ratio, at least 1 × 1.
pub fn fit_within(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let scale = (f64::from(max_w) / w).min(f64::from(max_h) / h).min(1.0);
    (
        ((w * scale).round() as u32).max(1),
        ((h * scale).round() as u32).max(1),
    )
}

fn fit_page(page: GrayImage) -> GrayImage {
    let (w, h) = fit_within(page.width(), page.height(), MAX_WIDTH, MAX_PAGE_HEIGHT);
    if (w, h) == page.dimensions() {
        page
    } else {
        imageops::resize(&page, w, h, imageops::FilterType::Triangle)
    }
}

/// Encodes a greyscale image as PNG.
pub fn encode_png(image: &GrayImage) -> Result<Vec<u8>, SheetError> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| SheetError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

/// Decodes one PNG page image to greyscale under the decoding limits; [`SheetError::BadPage`]
/// (with the 1-based `index`) when it is not a PNG or too large.
pub fn decode_page(bytes: &[u8], index: usize) -> Result<GrayImage, SheetError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PAGE_SIDE);
    limits.max_image_height = Some(MAX_PAGE_SIDE);
    limits.max_alloc = Some(MAX_PAGE_ALLOC);
    reader.limits(limits);
    reader
        .decode()
        .map(|img| img.into_luma8())
        .map_err(|_| SheetError::BadPage(index))
}

/// Makes sheets of pre-rendered PNG pages, decoding one page at a time.
pub fn sheets_from_png_pages(pages: &[Vec<u8>]) -> Result<Sheets, SheetError> {
    let mut builder = SheetBuilder::new();
    for (i, bytes) in pages.iter().take(MAX_PAGES).enumerate() {
        builder.push(decode_page(bytes, i + 1)?)?;
    }
    builder.finish()
}

/// Whether a cached image of `width` × `height` could be a sheet this runner made (an image
/// of another origin, e.g. a whole-document stitch of the original worker, is not reused).
pub fn is_sheet_sized(width: u32, height: u32) -> bool {
    (1..=MAX_WIDTH).contains(&width) && (1..=MAX_SHEET_HEIGHT).contains(&height)
}

/// Whether `bytes` start like a file of `mime`: PNG and JPEG by their magic bytes; a PDF
/// by a `%PDF-` header within the first 1024 bytes (where PDF readers look for it).
pub fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "application/pdf" => bytes[..bytes.len().min(1024)]
            .windows(5)
            .any(|w| w == b"%PDF-"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn png(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
        let img = RgbImage::from_pixel(width, height, Rgb(colour));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn load(bytes: &[u8]) -> GrayImage {
        image::load_from_memory(bytes).unwrap().into_luma8()
    }

    #[test]
    fn two_pages_make_one_greyscale_sheet_with_a_white_gap() {
        let sheets =
            sheets_from_png_pages(&[png(100, 50, [0, 0, 0]), png(60, 40, [0, 0, 0])]).unwrap();
        assert_eq!((sheets.images.len(), sheets.pages), (1, 2));
        let img = load(&sheets.images[0]);
        assert_eq!((img.width(), img.height()), (100, 50 + PAGE_GAP + 40));
        assert_eq!(img.get_pixel(10, 10).0, [0], "page 1 is black");
        assert_eq!(
            img.get_pixel(10, 50 + PAGE_GAP / 2).0,
            [255],
            "gap is white"
        );
        assert_eq!(
            img.get_pixel(80, 50 + PAGE_GAP + 10).0,
            [255],
            "narrow page padded with white"
        );
        assert_eq!(img.get_pixel(10, 50 + PAGE_GAP + 10).0, [0]);
    }

    #[test]
    fn pages_are_grouped_into_sheets_in_order() {
        let pages: Vec<Vec<u8>> = (0..5u8)
            .map(|i| png(20, 10, [i * 40, i * 40, i * 40]))
            .collect();
        let sheets = sheets_from_png_pages(&pages).unwrap();
        assert_eq!((sheets.images.len(), sheets.pages), (3, 5));
        let last = load(&sheets.images[2]);
        assert_eq!(last.height(), 10, "the fifth page alone");
        assert_eq!(last.get_pixel(1, 1).0, [160]);
        let first = load(&sheets.images[0]);
        assert_eq!(first.get_pixel(1, 1).0, [0]);
        assert_eq!(first.get_pixel(1, 10 + PAGE_GAP + 1).0, [40]);
    }

    #[test]
    fn wide_and_tall_pages_are_scaled_into_the_page_box() {
        let sheets = sheets_from_png_pages(&[png(MAX_WIDTH * 2, 100, [255, 255, 255])]).unwrap();
        let img = load(&sheets.images[0]);
        assert_eq!((img.width(), img.height()), (MAX_WIDTH, 50));
        let tall = sheets_from_png_pages(&[png(10, MAX_PAGE_HEIGHT * 3, [0, 0, 0])]).unwrap();
        let img = load(&tall.images[0]);
        assert_eq!(img.height(), MAX_PAGE_HEIGHT);
        assert!(is_sheet_sized(img.width(), img.height()));
    }

    #[test]
    fn pages_past_the_cap_are_left_out() {
        let mut builder = SheetBuilder::new();
        for _ in 0..MAX_PAGES + 3 {
            builder.push(GrayImage::new(2, 2)).unwrap();
        }
        let sheets = builder.finish().unwrap();
        assert_eq!(sheets.pages, MAX_PAGES);
        assert_eq!(sheets.images.len(), MAX_SHEETS);
    }

    #[test]
    fn broken_or_missing_pages_are_errors() {
        assert_eq!(sheets_from_png_pages(&[]), Err(SheetError::NoPages));
        assert_eq!(
            sheets_from_png_pages(&[png(1, 1, [0, 0, 0]), b"not a png".to_vec()]),
            Err(SheetError::BadPage(2))
        );
    }

    #[test]
    fn fit_within_keeps_the_aspect_ratio_and_never_enlarges() {
        assert_eq!(fit_within(3600, 1800, 1800, 3600), (1800, 900));
        assert_eq!(fit_within(100, 7200, 1800, 3600), (50, 3600));
        assert_eq!(fit_within(10, 10, 1800, 3600), (10, 10));
        assert_eq!(fit_within(0, 0, 1800, 3600), (1, 1));
    }

    #[test]
    fn cached_images_are_reused_only_when_sheet_sized() {
        assert!(is_sheet_sized(MAX_WIDTH, MAX_SHEET_HEIGHT));
        assert!(
            !is_sheet_sized(2480, 3508),
            "a 300 DPI page of another worker"
        );
        assert!(!is_sheet_sized(1000, MAX_SHEET_HEIGHT + 1));
    }

    #[test]
    fn magic_bytes_match_the_mime_type() {
        assert!(looks_like("image/png", &png(1, 1, [0, 0, 0])));
        assert!(!looks_like("image/jpeg", &png(1, 1, [0, 0, 0])));
        assert!(looks_like("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(looks_like("application/pdf", b"%PDF-1.7"));
        assert!(looks_like("application/pdf", b"\xEF\xBB\xBF%PDF-1.4"));
        assert!(!looks_like("application/pdf", b"PK\x03\x04"));
    }
}
