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
        .map(|(i, bytes)| {
            image::load_from_memory_with_format(bytes, ImageFormat::Png)
                .map(|img| img.to_luma8())
                .map_err(|_| StitchError::BadPage(i + 1))
        })
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
    let gaps = PAGE_GAP * (scaled.len() as u32 - 1);
    let height = scaled.iter().map(GrayImage::height).sum::<u32>() + gaps;
    let mut canvas = GrayImage::from_pixel(width, height, Luma([255]));
    let mut y = 0;
    for page in &scaled {
        imageops::replace(&mut canvas, page, 0, i64::from(y));
        y += page.height() + PAGE_GAP;
    }
    let mut out = Cursor::new(Vec::new());
    canvas
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| StitchError::Encode(e.to_string()))?;
    Ok((out.into_inner(), scaled.len()))
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
