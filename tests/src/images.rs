//! Hostile image files for the tests: a PNG whose header announces more pixels than its data
//! could ever hold (a decompression bomb as far as a decoder that trusts the header goes).

/// A PNG signature, a valid `IHDR` chunk announcing `width` × `height` RGB pixels and a few
/// bytes of image data: any decoder that allocates from the header alone allocates `3 × w × h` bytes.
pub fn png_bomb_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // The start of a zlib stream: decoders read the header up to here, and the pixel data
    // would come next.
    chunk(&mut png, b"IDAT", &[0x78, 0x9C, 0x63, 0x60]);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    png.extend_from_slice(&body);
    png.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_matches_the_png_specification_example() {
        // The CRC of "IEND" is the constant every PNG ends with.
        assert_eq!(super::crc32(b"IEND"), 0xAE42_6082);
    }
}
