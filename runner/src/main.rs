//! `learning-runner` entry point: parse, start logging, dispatch. Everything else lives in the
//! library crate.

use std::process::ExitCode;

use clap::Parser;
use learning_runner::cli::{Cli, Command};
use learning_runner::{app, config, db, http, preflight, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.settings.log_level, &cli.settings.log_format) {
        eprintln!("learning-runner: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("learning-runner: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = match config::runner_config(&settings) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            match app::run(config, settings.allow_superuser_dsn).await {
                Ok(summary) => {
                    println!(
                        "learning-runner stopped: completed={} retried={} failed={} skipped={} lease_lost={} handed_back={} abandoned={} released={}",
                        summary.completed, summary.retried, summary.failed, summary.skipped, summary.lease_lost, summary.handed_back, summary.abandoned, summary.released
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("learning-runner: {e:#}");
                    tracing::error!(event = "learning.runner.start_failed", error = %e);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate => {
            let database = match config::database_config(&settings, false, 2) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            let pool = db::lazy_pool(&database);
            match app::migrate(&pool).await {
                Ok(()) => {
                    println!("learning-runner: migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("learning-runner: migration failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Preflight {
            with_test_submission,
        } => {
            let lines = preflight::run(&settings, with_test_submission).await;
            print!("{}", preflight::render(&lines));
            if preflight::all_passed(&lines) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Healthcheck => {
            let database = match config::database_config(&settings, true, 1) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            let report = http::probe_report(&db::lazy_pool(&database)).await;
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            if report.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("learning-runner: configuration error: {e}");
    ExitCode::from(2)
}
