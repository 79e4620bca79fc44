//! Small, valid PDF documents written from scratch for the tests and benchmarks (no PDF
//! library): pages of a chosen size with a line of Helvetica text and a black bar, a correct
//! cross-reference table, and optionally a password-protected variant.

use std::fmt::Write as _;

/// A4 in PDF points.
pub const A4: (u32, u32) = (595, 842);

/// One page: its size in points and a line of text printed near the top.
#[derive(Debug, Clone)]
pub struct PdfPage {
    /// Width and height in points.
    pub size: (u32, u32),
    /// ASCII text drawn at 14 pt (parentheses and backslashes are escaped).
    pub text: String,
}

impl PdfPage {
    /// An A4 page with `text`.
    pub fn a4(text: &str) -> Self {
        PdfPage {
            size: A4,
            text: text.to_owned(),
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
    // Objects: 1 catalog, 2 page tree, 3 font, then per page: page, content.
    let mut objects: Vec<String> = Vec::new();
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 4 + 2 * i))
        .collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into());
    for (i, page) in pages.iter().enumerate() {
        let (w, h) = page.size;
        let content = format!(
            "0 0 0 rg 36 {} {} 12 re f BT /F1 14 Tf 36 {} Td ({}) Tj ET",
            h.saturating_sub(120),
            w.saturating_sub(72),
            h.saturating_sub(60),
            escape(&page.text)
        );
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
    }
    let encrypt_obj = if encrypted {
        objects.push(format!(
            "<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <{}> /U <{}> >>",
            "11".repeat(32),
            "22".repeat(32)
        ));
        Some(objects.len())
    } else {
        None
    };

    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = write!(out, "{} 0 obj\n{body}\nendobj\n", i + 1);
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(out, "{offset:010} 00000 n ");
    }
    let encrypt = encrypt_obj
        .map(|n| format!(" /Encrypt {n} 0 R /ID [<{0}> <{0}>]", "ab".repeat(16)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R{encrypt} >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.into_bytes()
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
        for (n, line) in pdf[xref_at..].lines().skip(3).take(7).enumerate() {
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
