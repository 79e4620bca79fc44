//! `make bench` (second part): what the vision input costs on the runner's side.
//!
//! 1. PDF rendering: a 100-page A4 PDF, and 100 pages of the largest page size a PDF allows
//!    (200 × 200 inches, blank), and 100 scanned A4 pages (one JPEG each), rendered into sheets by the runner's own `render_pdf`, each
//!    in a fresh child process so its peak RSS (`VmHWM`) is the document's alone. Reported:
//!    render time per page and peak RSS (medians of `BENCH_RUNS`, default 3), and the peak RSS
//!    of a child that only loads the PDF, for comparison.
//! 2. Photos: a sample set of phone-sized and small photos through `prepare_photo`: pixels and
//!    bytes stored versus sent to the model.

use std::io::Cursor;
use std::process::Command;
use std::time::{Duration, Instant};

use image::{ImageFormat, Rgb, RgbImage};
use learning_runner::submission::pdf::render_pdf;
use learning_runner::submission::photo::prepare_photo;
use learning_tests::pdf::{document, numbered_a4, scanned_a4, PdfPage};

const CHILD: &str = "LEARNING_RENDER_BENCH_CHILD";

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Child process: `render <file>` or `load <file>`; prints `<pages> <seconds> <peak MiB>`.
fn child(mode: &str, file: &str) {
    let bytes = std::fs::read(file).expect("read the PDF");
    let started = Instant::now();
    let pages = if mode == "render" {
        let rendered = render_pdf(bytes, Instant::now() + Duration::from_secs(3600))
            .expect("the bench PDF renders");
        assert_eq!(rendered.sheets.pages, rendered.pages_total);
        rendered.sheets.pages
    } else {
        std::hint::black_box(&bytes);
        0
    };
    println!(
        "{pages} {} {}",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

fn run_child(mode: &str, file: &std::path::Path) -> (usize, f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .env(CHILD, format!("{mode}:{}", file.display()))
        .output()
        .expect("start the bench child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let mut next = || it.next().unwrap().parse::<f64>().unwrap();
    (next() as usize, next(), next())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pdf_table(runs: usize) {
    let dir = std::env::temp_dir().join(format!("lr-render-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let huge: Vec<PdfPage> = (0..100)
        .map(|_| PdfPage {
            size: (14_400, 14_400),
            text: String::new(),
            scan: None,
        })
        .collect();
    // A phone scan at about 150 DPI, compressed like a scanner app's (100 pages stay within
    // GUSTAV's 10 MiB upload limit).
    let scan = textured(1240, 1754, ImageFormat::Jpeg, 3);
    let docs = [
        ("100 pages A4, text", numbered_a4(100)),
        (
            "100 pages A4, scanned (JPEG each)",
            scanned_a4(100, 1240, 1754, &scan),
        ),
        ("100 pages 200 × 200 in, blank", document(&huge)),
    ];
    println!("\n## PDF rendering (release build, one child process per run, median of {runs})\n");
    println!(
        "| document | file MiB | pages | ms per page | peak RSS MiB | peak RSS, PDF loaded only |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, bytes) in docs {
        let file = dir.join("bench.pdf");
        std::fs::write(&file, &bytes).unwrap();
        let mut per_page = Vec::new();
        let mut rss = Vec::new();
        let mut pages = 0;
        for _ in 0..runs {
            let (p, secs, peak) = run_child("render", &file);
            pages = p;
            per_page.push(secs * 1000.0 / p as f64);
            rss.push(peak);
        }
        let (_, _, baseline) = run_child("load", &file);
        println!(
            "| {name} | {:.1} | {pages} | {:.1} | {:.1} | {:.1} |",
            bytes.len() as f64 / (1024.0 * 1024.0),
            median(per_page),
            median(rss),
            baseline
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A photo-like image: smooth gradients with deterministic grain, so JPEG sizes are realistic.
fn photo(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    textured(width, height, format, 24)
}

/// Gradients with `grain` levels of deterministic noise.
fn textured(width: u32, height: u32, format: ImageFormat, grain: u64) -> Vec<u8> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let img = RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let grain = (seed % grain) as u32;
        Rgb([
            ((x * 200 / width) + grain) as u8,
            ((y * 180 / height) + grain) as u8,
            (120 + grain) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn photo_table() {
    println!("\n## Photos: stored versus sent to the vision model\n");
    println!("| photo | stored pixels | stored KiB | sent pixels | sent KiB | ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, mime, w, h, format) in [
        (
            "phone JPEG 12 MP",
            "image/jpeg",
            4032,
            3024,
            ImageFormat::Jpeg,
        ),
        (
            "phone JPEG 12 MP, portrait",
            "image/jpeg",
            3024,
            4032,
            ImageFormat::Jpeg,
        ),
        (
            "screenshot PNG 2560 × 1440",
            "image/png",
            2560,
            1440,
            ImageFormat::Png,
        ),
        (
            "small JPEG 1280 × 960",
            "image/jpeg",
            1280,
            960,
            ImageFormat::Jpeg,
        ),
    ] {
        let bytes = photo(w, h, format);
        let stored = bytes.len();
        let started = Instant::now();
        let prepared = prepare_photo(mime, bytes).unwrap();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (sw, sh) = prepared.sent;
        println!(
            "| {name} | {:.1} MP | {} | {:.1} MP | {} | {ms:.0} |",
            f64::from(w * h) / 1e6,
            stored / 1024,
            f64::from(sw * sh) / 1e6,
            prepared.bytes.len() / 1024,
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (mode, file) = spec.split_once(':').expect("mode:file");
        child(mode, file);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    pdf_table(runs);
    photo_table();
}
