//! Stitching pre-rendered PDF pages into one tall greyscale PNG for the vision model:
//! pages are converted to greyscale, scaled down to a common width when wider, stacked
//! top to bottom on white with a white gap between pages. Pure (bytes in, bytes out).

use std::io::Cursor;

use image::{imageops, GrayImage, ImageFormat, Luma};

/// The most pages a stitched image takes (the original worker's limit).
pub const MAX_PAGES: usize = 100;
/// Pages wider than this are scaled down (keeps the image within what vision models take).
pub const MAX_WIDTH: u32 = 1800;
/// White rows between pages.
pub const PAGE_GAP: u32 = 24;
/// The stitched image stops growing at this height (pages beyond it are left out), which
/// bounds its memory to `MAX_WIDTH × MAX_TOTAL_HEIGHT` bytes of greyscale.
pub const MAX_TOTAL_HEIGHT: u32 = 40_000;
/// Decoding limits per page: no page may make the decoder allocate more than this.
const MAX_PAGE_ALLOC: u64 = 256 * 1024 * 1024;
const MAX_PAGE_SIDE: u32 = 30_000;

/// Why pages could not be stitched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StitchError {
    /// No page given.
    #[error("no pages to stitch")]
    NoPages,
    /// A page is not a decodable PNG (1-based index).
    #[error("page {0} is not a valid PNG image")]
    BadPage(usize),
    /// Encoding the result failed.
    #[error("could not encode the stitched image: {0}")]
    Encode(String),
}

/// Stitches up to [`MAX_PAGES`] PNG pages; returns the PNG bytes and the number of pages used.
pub fn stitch_pages(pages: &[Vec<u8>]) -> Result<(Vec<u8>, usize), StitchError> {
    if pages.is_empty() {
        return Err(StitchError::NoPages);
    }
    let decoded: Vec<GrayImage> = pages
        .iter()
        .take(MAX_PAGES)
        .enumerate()
        .map(|(i, bytes)| decode_page(bytes).ok_or(StitchError::BadPage(i + 1)))
        .collect::<Result<_, _>>()?;
    let width = decoded
        .iter()
        .map(GrayImage::width)
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_WIDTH);
    let scaled: Vec<GrayImage> = decoded
        .into_iter()
        .map(|page| {
            if page.width() > width {
                let height = ((u64::from(page.height()) * u64::from(width))
                    / u64::from(page.width()))
                .max(1) as u32;
                imageops::resize(&page, width, height, imageops::FilterType::Triangle)
            } else {
                page
            }
        })
        .collect();
    // Keep whole pages while they fit under the height cap (always at least the first).
    let mut height = 0u32;
    let mut kept = 0usize;
    for page in &scaled {
        let next = height + if kept == 0 { 0 } else { PAGE_GAP } + page.height();
        if kept > 0 && next > MAX_TOTAL_HEIGHT {
            break;
        }
        height = next.min(MAX_TOTAL_HEIGHT);
        kept += 1;
    }
    let scaled = &scaled[..kept];
    let mut canvas = GrayImage::from_pixel(width, height, Luma([255]));
    let mut y = 0;
    for page in scaled {
        imageops::replace(&mut canvas, page, 0, i64::from(y));
        y += page.height() + PAGE_GAP;
    }
    let mut out = Cursor::new(Vec::new());
    canvas
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| StitchError::Encode(e.to_string()))?;
    Ok((out.into_inner(), scaled.len()))
}

/// Decodes one PNG page to greyscale under the decoding limits; `None` when it is not a PNG
/// or too large.
fn decode_page(bytes: &[u8]) -> Option<GrayImage> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PAGE_SIDE);
    limits.max_image_height = Some(MAX_PAGE_SIDE);
    limits.max_alloc = Some(MAX_PAGE_ALLOC);
    reader.limits(limits);
    reader.decode().ok().map(|img| img.to_luma8())
}

/// Whether `bytes` start like a PNG or JPEG file, matching `mime`.
pub fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "application/pdf" => bytes.starts_with(b"%PDF-"),
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

    #[test]
    fn pages_are_stacked_in_greyscale_with_white_gaps() {
        let (bytes, used) =
            stitch_pages(&[png(100, 50, [0, 0, 0]), png(60, 40, [0, 0, 0])]).unwrap();
        assert_eq!(used, 2);
        let img = image::load_from_memory(&bytes).unwrap().to_luma8();
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
        assert_eq!(
            img.get_pixel(10, 50 + PAGE_GAP + 10).0,
            [0],
            "page 2 is black"
        );
    }

    #[test]
    fn wide_pages_are_scaled_to_the_maximum_width() {
        let (bytes, _) = stitch_pages(&[png(MAX_WIDTH * 2, 100, [255, 255, 255])]).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (MAX_WIDTH, 50));
    }

    #[test]
    fn the_stitched_height_is_capped_by_leaving_out_whole_pages() {
        let tall = png(10, MAX_TOTAL_HEIGHT / 2 + 10, [0, 0, 0]);
        let (bytes, used) = stitch_pages(&[tall.clone(), tall.clone(), tall]).unwrap();
        assert_eq!(used, 1, "a second page would pass the cap");
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!(img.height(), MAX_TOTAL_HEIGHT / 2 + 10);
    }

    #[test]
    fn broken_or_missing_pages_are_errors() {
        assert_eq!(stitch_pages(&[]), Err(StitchError::NoPages));
        assert_eq!(
            stitch_pages(&[png(1, 1, [0, 0, 0]), b"not a png".to_vec()]),
            Err(StitchError::BadPage(2))
        );
    }

    #[test]
    fn magic_bytes_match_the_mime_type() {
        assert!(looks_like("image/png", &png(1, 1, [0, 0, 0])));
        assert!(!looks_like("image/jpeg", &png(1, 1, [0, 0, 0])));
        assert!(looks_like("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(looks_like("application/pdf", b"%PDF-1.7"));
    }
}
