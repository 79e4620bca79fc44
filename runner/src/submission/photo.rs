//! Photos for the vision model. The dimensions come from the file's header first: a photo
//! above [`MAX_PHOTO_PIXELS`] (a decompression bomb, or far more than any phone camera
//! writes by default) is refused without being decoded. A photo whose longer side exceeds
//! [`MAX_PHOTO_SIDE`], or whose EXIF data says it is rotated, is decoded, turned upright,
//! scaled down and re-encoded (JPEG stays JPEG at quality 90, PNG stays PNG); any other photo
//! is sent exactly as stored. Pure CPU work: callers run it on a blocking thread.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// Photos with more pixels than this are refused unread (8192 × 6144 and more).
pub const MAX_PHOTO_PIXELS: u64 = 50_000_000;
/// The longer side of a photo as sent to the model. Vision models shrink every image to a
/// fixed pixel budget (Qwen2.5-VL in Ollama: about one megapixel), so more pixels cost
/// transfer and decoding without improving the transcript; 1600 px across a photographed
/// A4 page is still about 190 pixels per inch.
pub const MAX_PHOTO_SIDE: u32 = 1600;
/// JPEG quality of a re-encoded photo.
const JPEG_QUALITY: u8 = 90;
/// The most a decoder may allocate for one photo.
const MAX_PHOTO_ALLOC: u64 = 320 * 1024 * 1024;

/// Why a photo cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    /// More pixels than [`MAX_PHOTO_PIXELS`].
    #[error("the image has {width} × {height} pixels; the limit is {MAX_PHOTO_PIXELS} pixels")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
    },
    /// The header or the pixel data cannot be decoded.
    #[error("the image cannot be decoded")]
    Undecodable,
    /// Decoding would need more memory than a photo may take (e.g. 16 bits per channel).
    #[error("the image needs more than {} MiB to decode", MAX_PHOTO_ALLOC / (1024 * 1024))]
    TooLargeToDecode,
    /// Re-encoding the scaled photo failed.
    #[error("the scaled image could not be encoded")]
    Encode,
}

/// A photo ready for the model, with what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPhoto {
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// Dimensions of the stored photo.
    pub original: (u32, u32),
    /// Dimensions of the photo sent (after rotation and scaling).
    pub sent: (u32, u32),
    /// Whether the bytes differ from the stored file.
    pub transformed: bool,
}

fn format_of(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        _ => None,
    }
}

/// Prepares the stored photo `bytes` of type `mime` (`image/jpeg` or `image/png`).
pub fn prepare_photo(mime: &str, bytes: Vec<u8>) -> Result<PreparedPhoto, PhotoError> {
    let format = format_of(mime).ok_or(PhotoError::Undecodable)?;
    let (width, height, orientation) = {
        let mut decoder = decoder(&bytes, format)?;
        let (width, height) = decoder.dimensions();
        if u64::from(width) * u64::from(height) > MAX_PHOTO_PIXELS {
            return Err(PhotoError::TooManyPixels { width, height });
        }
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        (width, height, orientation)
    };
    if width.max(height) <= MAX_PHOTO_SIDE && orientation == Orientation::NoTransforms {
        return Ok(PreparedPhoto {
            bytes,
            original: (width, height),
            sent: (width, height),
            transformed: false,
        });
    }
    let mut image = DynamicImage::from_decoder(decoder(&bytes, format)?).map_err(|e| match e {
        image::ImageError::Limits(_) => PhotoError::TooLargeToDecode,
        _ => PhotoError::Undecodable,
    })?;
    drop(bytes);
    image.apply_orientation(orientation);
    if image.width().max(image.height()) > MAX_PHOTO_SIDE {
        image = image.resize(
            MAX_PHOTO_SIDE,
            MAX_PHOTO_SIDE,
            image::imageops::FilterType::Triangle,
        );
    }
    let sent = (image.width(), image.height());
    let encoded = encode(&image, format)?;
    Ok(PreparedPhoto {
        bytes: encoded,
        original: (width, height),
        sent,
        transformed: true,
    })
}

/// A decoder for `bytes` under the allocation limit (reads the header only).
fn decoder(bytes: &[u8], format: ImageFormat) -> Result<impl ImageDecoder + '_, PhotoError> {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PHOTO_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    reader.into_decoder().map_err(|_| PhotoError::Undecodable)
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
            .map_err(|_| PhotoError::Encode)?,
        _ => image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|_| PhotoError::Encode)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x % 251) as u8, (y % 241) as u8, 90])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn small_photos_are_sent_unchanged() {
        let bytes = encoded(800, 600, ImageFormat::Jpeg);
        let prepared = prepare_photo("image/jpeg", bytes.clone()).unwrap();
        assert!(!prepared.transformed);
        assert_eq!(prepared.bytes, bytes);
        assert_eq!(prepared.sent, (800, 600));
    }

    #[test]
    fn large_photos_are_scaled_to_the_longer_side_and_keep_their_format() {
        for (mime, format) in [
            ("image/jpeg", ImageFormat::Jpeg),
            ("image/png", ImageFormat::Png),
        ] {
            let prepared = prepare_photo(mime, encoded(3200, 2400, format)).unwrap();
            assert!(prepared.transformed);
            assert_eq!(prepared.original, (3200, 2400));
            assert_eq!(prepared.sent, (MAX_PHOTO_SIDE, 1200), "{mime}");
            assert_eq!(image::guess_format(&prepared.bytes).unwrap(), format);
            let back = image::load_from_memory(&prepared.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (MAX_PHOTO_SIDE, 1200));
        }
    }

    #[test]
    fn a_pixel_bomb_is_refused_from_its_header() {
        // A header announcing 20000 × 20000 pixels and no data: decoding would need 1.2 GB.
        let png = learning_tests::images::png_bomb_header(20_000, 20_000);
        assert_eq!(
            prepare_photo("image/png", png),
            Err(PhotoError::TooManyPixels {
                width: 20_000,
                height: 20_000
            })
        );
    }

    #[test]
    fn garbage_is_undecodable() {
        assert_eq!(
            prepare_photo("image/jpeg", vec![0xFF, 0xD8, 0xFF, 0x00]),
            Err(PhotoError::Undecodable)
        );
    }
}
