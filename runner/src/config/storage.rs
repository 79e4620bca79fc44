//! The storage section: where submission files are read from (the shared volume and/or
//! Supabase Storage) and the bucket name.

use std::path::PathBuf;

use super::{invalid, non_empty, Backend, ConfigError};
use crate::cli::Settings;
use crate::db::dsn::Secret;
use learning_contract::env::SUPABASE_URL;
use learning_contract::url::check_supabase_url;

/// Submission storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Local root of the submissions volume.
    pub verify_root: Option<PathBuf>,
    /// Supabase URL for the fallback.
    pub supabase_url: Option<String>,
    /// Supabase service-role key.
    pub service_role_key: Option<Secret>,
    /// Bucket name.
    pub bucket: String,
}

/// The storage settings, checked against what `backend` needs.
pub fn storage_config(settings: &Settings, backend: Backend) -> Result<StorageConfig, ConfigError> {
    let storage = StorageConfig {
        verify_root: settings.storage_verify_root.clone(),
        supabase_url: settings
            .supabase_url
            .clone()
            .filter(|s| !s.trim().is_empty()),
        service_role_key: settings.supabase_service_role_key.clone(),
        bucket: bucket_name(&settings.learning_storage_bucket)?,
    };
    check_storage(&storage, backend)?;
    Ok(storage)
}
/// A bucket name: ASCII letters, digits, `.`, `_` or `-` (no `/`, so it cannot change the
/// object path).
fn bucket_name(raw: &str) -> Result<String, ConfigError> {
    let name = non_empty("LEARNING_STORAGE_BUCKET", raw)?;
    let ok = name.len() <= 63
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(invalid(
            "LEARNING_STORAGE_BUCKET",
            format!("'{name}' is not a bucket name (letters, digits, '.', '_', '-')"),
        ));
    }
    Ok(name)
}

/// The local backend must be able to read submission files: a readable root directory, or
/// Supabase Storage given as `http(s)://host[:port]` with its key.
fn check_storage(storage: &StorageConfig, backend: Backend) -> Result<(), ConfigError> {
    if let Some(root) = &storage.verify_root {
        if std::fs::read_dir(root).is_err() {
            return Err(invalid(
                "STORAGE_VERIFY_ROOT",
                format!("{} is not a readable directory", root.display()),
            ));
        }
    }
    if let Some(url) = &storage.supabase_url {
        if let Err(why) = check_supabase_url(url) {
            return Err(invalid(SUPABASE_URL, why.to_string()));
        }
        if storage
            .service_role_key
            .as_ref()
            .is_none_or(|k| k.expose().is_empty())
        {
            return Err(invalid(
                "SUPABASE_SERVICE_ROLE_KEY",
                "is required when SUPABASE_URL is set",
            ));
        }
    }
    if backend == Backend::Local && storage.verify_root.is_none() && storage.supabase_url.is_none()
    {
        return Err(invalid(
            "STORAGE_VERIFY_ROOT",
            "AI_BACKEND=local needs the submission files: set STORAGE_VERIFY_ROOT (the shared volume) and/or SUPABASE_URL",
        ));
    }
    Ok(())
}
