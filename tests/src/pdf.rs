//! Small, valid PDF documents written from scratch for the tests and benchmarks (no PDF
//! library): pages of a chosen size with a line of Helvetica text and a black bar, a correct
//! cross-reference table, and optionally a password-protected variant.

use std::fmt::Write as _;

/// A4 in PDF points.
pub const A4: (u32, u32) = (595, 842);

/// One page: its size in points, a line of text printed near the top, and optionally a scan
/// (a JPEG drawn over the whole page, as a scanner app writes it).
#[derive(Debug, Clone)]
pub struct PdfPage {
    /// Width and height in points.
    pub size: (u32, u32),
    /// ASCII text drawn at 14 pt (parentheses and backslashes are escaped).
    pub text: String,
    /// A JPEG (`DCTDecode`) of `width` × `height` pixels, RGB, filling the page.
    pub scan: Option<(u32, u32, Vec<u8>)>,
}

impl PdfPage {
    /// An A4 page with `text`.
    pub fn a4(text: &str) -> Self {
        PdfPage {
            size: A4,
            text: text.to_owned(),
            scan: None,
        }
    }
}

/// A PDF of `pages`.
pub fn document(pages: &[PdfPage]) -> Vec<u8> {
    build(pages, false)
}

/// A PDF of `pages` that needs a user password to open (standard security handler, RC4 40-bit
/// entries that no empty password satisfies).
pub fn encrypted_document(pages: &[PdfPage]) -> Vec<u8> {
    build(pages, true)
}

/// `n` A4 pages, each with its number in the text.
pub fn numbered_a4(n: usize) -> Vec<u8> {
    let pages: Vec<PdfPage> = (1..=n)
        .map(|i| PdfPage::a4(&format!("Seite {i}: Die Zelle ist die kleinste Einheit.")))
        .collect();
    document(&pages)
}

/// `n` A4 pages, each a scan: the same `jpeg` (`width` × `height`, RGB) stored once per page.
pub fn scanned_a4(n: usize, width: u32, height: u32, jpeg: &[u8]) -> Vec<u8> {
    let pages: Vec<PdfPage> = (0..n)
        .map(|_| PdfPage {
            size: A4,
            text: String::new(),
            scan: Some((width, height, jpeg.to_vec())),
        })
        .collect();
    document(&pages)
}

fn escape(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii)
        .flat_map(|c| match c {
            '(' | ')' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

fn build(pages: &[PdfPage], encrypted: bool) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, 3 font, then per page: page, content, image.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 4 + 3 * i))
        .collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec());
    for (i, page) in pages.iter().enumerate() {
        let (w, h) = page.size;
        let image_obj = 6 + 3 * i;
        let scan = if page.scan.is_some() {
            format!("q {w} 0 0 {h} 0 0 cm /Im1 Do Q ")
        } else {
            String::new()
        };
        let content = format!(
            "{scan}0 0 0 rg 36 {} {} 12 re f BT /F1 14 Tf 36 {} Td ({}) Tj ET",
            h.saturating_sub(120),
            w.saturating_sub(72),
            h.saturating_sub(60),
            escape(&page.text)
        );
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 {image_obj} 0 R >> >> /Contents {} 0 R >>",
            5 + 3 * i
        ).into_bytes());
        objects.push(
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .into_bytes(),
        );
        let mut image = Vec::new();
        match &page.scan {
            Some((iw, ih, jpeg)) => {
                image.extend_from_slice(format!("<< /Type /XObject /Subtype /Image /Width {iw} /Height {ih} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>\nstream\n", jpeg.len()).as_bytes());
                image.extend_from_slice(jpeg);
                image.extend_from_slice(b"\nendstream");
            }
            None => image.extend_from_slice(b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /ASCIIHexDecode /Length 3 >>\nstream\nff>\nendstream"),
        }
        objects.push(image);
    }
    let encrypt_obj = if encrypted {
        objects.push(
            format!(
                "<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <{}> /U <{}> >>",
                "11".repeat(32),
                "22".repeat(32)
            )
            .into_bytes(),
        );
        Some(objects.len())
    } else {
        None
    };

    let mut out: Vec<u8> = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let mut tail = String::new();
    let _ = write!(tail, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(tail, "{offset:010} 00000 n ");
    }
    let encrypt = encrypt_obj
        .map(|n| format!(" /Encrypt {n} 0 R /ID [<{0}> <{0}>]", "ab".repeat(16)))
        .unwrap_or_default();
    let _ = write!(
        tail,
        "trailer\n<< /Size {} /Root 1 0 R{encrypt} >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend_from_slice(tail.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let pdf = String::from_utf8(numbered_a4(2)).unwrap();
        assert!(pdf.starts_with("%PDF-1.4"));
        let xref_at: usize = pdf
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref_at..].starts_with("xref"));
        for (n, line) in pdf[xref_at..].lines().skip(3).take(9).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(
                pdf[offset..].starts_with(&format!("{} 0 obj", n + 1)),
                "object {}",
                n + 1
            );
        }
        assert!(pdf.contains("(Seite 2: Die Zelle ist die kleinste Einheit.)"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a(b)\\c ä"), "a\\(b\\)\\\\c ");
    }
}
