//! The local (Ollama) backend wired to a fake Ollama and a temporary storage root.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;

use clap::Parser;
use image::{ImageFormat, Rgb, RgbImage};
use learning_runner::ai::Adapters;
use learning_runner::cli::Cli;
use learning_runner::config::{runner_config, RunnerConfig};
use learning_runner::job::process::JobContext;
use learning_runner::telemetry::metrics::Metrics;
use learning_tests::fake_ollama::FakeOllama;
use learning_tests::TestDb;

pub const VISION_MODEL: &str = "qwen2.5vl:3b";
pub const FEEDBACK_MODEL: &str = "gpt-oss:latest";

/// A temporary submissions volume, removed on drop.
pub struct StorageRoot(pub PathBuf);

impl StorageRoot {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lr-root-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        StorageRoot(dir)
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.0.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for StorageRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PNG of `w`×`h` pixels in one colour.
pub fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode(RgbImage::from_pixel(w, h, Rgb(rgb)), ImageFormat::Png)
}

/// A JPEG of `w`×`h` pixels in one colour.
pub fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode(RgbImage::from_pixel(w, h, Rgb(rgb)), ImageFormat::Jpeg)
}

fn encode(img: RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A fake Ollama with both models installed.
pub async fn fake_with_models() -> FakeOllama {
    let fake = FakeOllama::start().await;
    fake.add_model(VISION_MODEL);
    fake.add_model(FEEDBACK_MODEL);
    fake
}

/// The runner configuration for the local backend against `fake` and `root`.
pub fn local_config(
    db: &TestDb,
    fake: &FakeOllama,
    root: &StorageRoot,
    extra: &[&str],
) -> RunnerConfig {
    let root_arg = root.0.display().to_string();
    let url = db.worker_url();
    let base = fake.base_url();
    let mut args = vec![
        "learning-runner",
        "--database-url",
        url.as_str(),
        "--ai-backend",
        "local",
        "--ollama-base-url",
        base.as_str(),
        "--storage-verify-root",
        root_arg.as_str(),
        "--ai-timeout-vision",
        "2",
        "--ai-timeout-feedback",
        "2",
    ];
    args.extend_from_slice(extra);
    runner_config(&Cli::try_parse_from(args).unwrap().settings).unwrap()
}

/// Adapters and a job context for the local backend.
pub fn local_context(pool: &sqlx::PgPool, config: &RunnerConfig) -> (JobContext, Adapters) {
    let metrics = Metrics::new().unwrap();
    let (adapters, _monitor) = learning_runner::app::select_adapters(config, &metrics).unwrap();
    let mut ctx = super::context(pool, adapters.clone());
    ctx.metrics = metrics;
    ctx.timeout_vision = config.ai.timeout_vision + std::time::Duration::from_secs(1);
    ctx.timeout_feedback = config.ai.timeout_feedback * 3;
    (ctx, adapters)
}

/// A well-formed analysis answer for `criteria` with `score` each.
pub fn analysis_answer(criteria: &[&str], score: u32) -> String {
    let items: Vec<serde_json::Value> = criteria
        .iter()
        .map(|c| serde_json::json!({"criterion": c, "max_score": 10, "score": score, "explanation_md": format!("Begründung zu {c}")}))
        .collect();
    serde_json::json!({"score": 4, "criteria_results": items}).to_string()
}

/// A test database, the fake Ollama, a storage root and a job context for the local backend.
pub struct LocalSetup {
    pub db: TestDb,
    pub fake: FakeOllama,
    pub root: StorageRoot,
    pub ctx: JobContext,
}

/// The usual setup of a local-backend test: `fake` serves Ollama, `extra` are CLI settings.
pub async fn local_setup(fake: FakeOllama, extra: &[&str]) -> LocalSetup {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let root = StorageRoot::new();
    let (ctx, _) = local_context(&pool, &local_config(&db, &fake, &root, extra));
    LocalSetup {
        db,
        fake,
        root,
        ctx,
    }
}
