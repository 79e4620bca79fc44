//! Submission bytes: from the local submissions volume (`STORAGE_VERIFY_ROOT`) with path,
//! size and SHA-256 checks, else from Supabase Storage over HTTP (one pinned host:port, no
//! redirects, the service key as `apikey` and bearer token).
//!
//! Memory is bounded by the input: a local file is read through a [`MAX_FILE_BYTES`] window
//! (a file that grows after its size was checked is still not read further); a download is
//! read chunk by chunk and stopped as soon as it passes the recorded `size_bytes` (anything
//! more can only fail the size check) or [`MAX_FILE_BYTES`], whichever is smaller.
//!
//! Outcomes follow contract §7: a path escape, a size or hash mismatch are permanent
//! (`input_corrupt`), an oversized file is `input_too_large`, a file that cannot be fetched
//! is transient. Messages never contain storage keys, bucket names or the key.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::ai::AdapterError;
use crate::db::dsn::Secret;
use crate::job::error_code::ErrorCode;

/// The largest submission file, in bytes (contract §1).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Limit of one download from Supabase Storage.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the database says the file must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `size_bytes`.
    pub size: Option<i32>,
    /// `sha256`, lower-case hex.
    pub sha256: Option<String>,
}

/// Why a storage key cannot be used as a path below the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, absolute, `..`, or NUL.
    #[error("storage key is not a relative path below the storage root")]
    Escapes,
}

/// Refuses a key that could leave the root or the bucket lexically: empty, absolute, a `..`
/// segment, a backslash or NUL.
pub fn check_key(key: &str) -> Result<(), PathError> {
    if key.is_empty() || key.contains(['\0', '\\']) {
        return Err(PathError::Escapes);
    }
    let all_normal = Path::new(key)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !all_normal || key.split('/').any(|segment| segment == "..") {
        return Err(PathError::Escapes);
    }
    Ok(())
}

/// Joins `key` to `root`, refusing anything that could leave the root lexically
/// ([`check_key`]). Symlinks are checked after resolution by the caller.
pub fn join_under_root(root: &Path, key: &str) -> Result<PathBuf, PathError> {
    check_key(key)?;
    Ok(root.join(key))
}

/// The object name inside `bucket` for a storage key: GUSTAV's web app writes keys as
/// `submissions/{course}/{task}/{student}/{file}` and uploads them to the bucket without a
/// leading `<bucket>/` (default bucket `submissions`), so exactly one leading `<bucket>/` is
/// removed; any other key is the object name as it is (e.g. with the legacy bucket
/// `learning-submissions`).
pub fn object_key<'k>(bucket: &str, key: &'k str) -> &'k str {
    key.strip_prefix(bucket)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(key)
}

/// Percent-encodes each `/`-separated segment of an object key.
pub fn encode_object_key(key: &str) -> String {
    key.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn corrupt(reason: &'static str, message: &str) -> AdapterError {
    AdapterError::permanent_with_code(ErrorCode::InputCorrupt, reason, message)
}

fn too_large(size: u64) -> AdapterError {
    AdapterError::permanent_with_code(
        ErrorCode::InputTooLarge,
        "file_too_large",
        format!("submission file has {size} bytes; the limit is {MAX_FILE_BYTES}"),
    )
}

/// The most bytes worth reading for a file expected as `expected`: its recorded size when
/// there is one (more fails the size check anyway), never more than [`MAX_FILE_BYTES`].
pub fn read_cap(expected: &Expected) -> u64 {
    expected
        .size
        .and_then(|size| u64::try_from(size).ok())
        .map_or(MAX_FILE_BYTES, |size| size.min(MAX_FILE_BYTES))
}

/// The error for a file found to be larger than [`read_cap`]: `at_least` bytes is its size
/// (`exact`, from `Content-Length`) or how far the read got before it stopped.
fn over_cap(at_least: u64, exact: bool, expected: &Expected) -> AdapterError {
    let cap = read_cap(expected);
    if cap == MAX_FILE_BYTES {
        if exact {
            return too_large(at_least);
        }
        return AdapterError::permanent_with_code(
            ErrorCode::InputTooLarge,
            "file_too_large",
            format!("submission file has more than {MAX_FILE_BYTES} bytes, the limit; the read stopped there"),
        );
    }
    let found = if exact {
        format!("has {at_least} bytes")
    } else {
        format!("is larger (the read stopped after {at_least} bytes)")
    };
    corrupt(
        "size_mismatch",
        &format!("submission file {found}, the record says {cap}"),
    )
}

/// Checks size and hash against what the database recorded.
pub fn verify(bytes: &[u8], expected: &Expected) -> Result<(), AdapterError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if let Some(size) = expected.size {
        if i64::from(size) != bytes.len() as i64 {
            return Err(corrupt(
                "size_mismatch",
                &format!(
                    "submission file has {} bytes, the record says {size}",
                    bytes.len()
                ),
            ));
        }
    }
    if let Some(sha) = expected.sha256.as_deref() {
        if !sha.eq_ignore_ascii_case(&sha256_hex(bytes)) {
            return Err(corrupt(
                "hash_mismatch",
                "submission file does not match its recorded SHA-256",
            ));
        }
    }
    Ok(())
}

/// Supabase Storage as the fallback source.
#[derive(Debug, Clone)]
pub struct RemoteStorage {
    http: reqwest::Client,
    base: String,
    bucket: String,
    service_key: Secret,
}

/// Why the Supabase settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteConfigError {
    /// Not `http(s)://host[:port]` without credentials.
    #[error("SUPABASE_URL must be http(s)://host[:port] without credentials or query")]
    Url,
    /// URL without key.
    #[error("SUPABASE_SERVICE_ROLE_KEY is required when SUPABASE_URL is set")]
    MissingKey,
    /// The HTTP client could not be built.
    #[error("HTTP client setup failed: {0}")]
    Client(String),
}

impl RemoteStorage {
    /// Storage at `url` (scheme, host and port only), `bucket`, authenticated with `service_key`.
    pub fn new(
        url: &str,
        bucket: &str,
        service_key: Option<Secret>,
    ) -> Result<Self, RemoteConfigError> {
        let url =
            learning_contract::url::check_supabase_url(url).map_err(|_| RemoteConfigError::Url)?;
        let service_key = service_key
            .filter(|k| !k.expose().is_empty())
            .ok_or(RemoteConfigError::MissingKey)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(REMOTE_TIMEOUT)
            .build()
            .map_err(|e| RemoteConfigError::Client(e.to_string()))?;
        Ok(RemoteStorage {
            http,
            base: url,
            bucket: bucket.to_owned(),
            service_key,
        })
    }

    /// The object at `key`, read no further than [`read_cap`] of `expected`.
    async fn fetch(&self, key: &str, expected: &Expected) -> Result<Vec<u8>, AdapterError> {
        check_key(key)
            .map_err(|_| corrupt("path_escape", "storage key points outside the bucket"))?;
        let url = format!(
            "{}/storage/v1/object/{}/{}",
            self.base,
            encode_object_key(&self.bucket),
            encode_object_key(object_key(&self.bucket, key))
        );
        let unavailable = |what: String| {
            AdapterError::transient("storage_unavailable", format!("remote storage: {what}"))
        };
        let mut response = self
            .http
            .get(url)
            .header("apikey", self.service_key.expose())
            .bearer_auth(self.service_key.expose())
            .send()
            .await
            .map_err(|e| {
                unavailable(if e.is_timeout() {
                    "timeout".into()
                } else {
                    "connection failed".into()
                })
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {}", status.as_u16())));
        }
        let cap = read_cap(expected);
        if let Some(len) = response.content_length() {
            if len > cap {
                return Err(over_cap(len, true, expected));
            }
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| unavailable("download interrupted".into()))?
        {
            let read = (bytes.len() + chunk.len()) as u64;
            if read > cap {
                return Err(over_cap(read, false, expected));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Where submission files come from.
#[derive(Debug, Clone, Default)]
pub struct SubmissionStorage {
    /// The shared submissions volume.
    pub root: Option<PathBuf>,
    /// The bucket (`LEARNING_STORAGE_BUCKET`): the first segment of a PDF's derived folder on
    /// the volume, and the bucket of remote reads.
    pub bucket: String,
    /// Supabase Storage.
    pub remote: Option<RemoteStorage>,
}

impl SubmissionStorage {
    /// Reads the file at `key`, local first, then remote, and verifies it against `expected`.
    pub async fn read(&self, key: &str, expected: &Expected) -> Result<Vec<u8>, AdapterError> {
        if let Some(root) = &self.root {
            if let Some(bytes) = read_local(root, key).await? {
                verify(&bytes, expected)?;
                return Ok(bytes);
            }
        }
        match &self.remote {
            Some(remote) => {
                let bytes = remote.fetch(key, expected).await?;
                verify(&bytes, expected)?;
                Ok(bytes)
            }
            None => Err(AdapterError::transient(
                "file_not_found",
                "submission file not found in the local storage root and no remote storage is configured",
            )),
        }
    }
}

/// The file below `root` (symlinks resolved, still below the root; a regular file within the
/// size cap), `None` when it does not exist there.
pub async fn read_local(root: &Path, key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
    let escape = || corrupt("path_escape", "storage key points outside the storage root");
    let path = join_under_root(root, key).map_err(|_| escape())?;
    let resolved = match tokio::fs::canonicalize(&path).await {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => {
            return Err(AdapterError::transient(
                "storage_unavailable",
                "local storage: cannot resolve the file",
            ))
        }
    };
    let canonical_root = tokio::fs::canonicalize(root).await.map_err(|_| {
        AdapterError::transient(
            "storage_unavailable",
            "local storage root is not accessible",
        )
    })?;
    if !resolved.starts_with(&canonical_root) {
        return Err(escape());
    }
    let meta = tokio::fs::metadata(&resolved).await.map_err(|_| {
        AdapterError::transient("storage_unavailable", "local storage: cannot stat the file")
    })?;
    if !meta.is_file() {
        return Err(corrupt(
            "not_a_file",
            "storage key does not name a regular file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let unreadable =
        |_| AdapterError::transient("storage_unavailable", "local storage: cannot read the file");
    let file = tokio::fs::File::open(&resolved).await.map_err(unreadable)?;
    // The size was checked above; the window keeps a file that grows meanwhile bounded too.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(over_cap(bytes.len() as u64, false, &Expected::default()));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_stay_below_the_root() {
        let root = Path::new("/srv/submissions");
        assert_eq!(
            join_under_root(root, "c/t/a.png").unwrap(),
            root.join("c/t/a.png")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\0b"] {
            assert_eq!(
                join_under_root(root, bad),
                Err(PathError::Escapes),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_leading_bucket_segment_is_removed_from_object_keys() {
        let key = "submissions/6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e/1764922870123-bd154643c9074c7d828e51cc01231baa.jpg";
        assert_eq!(object_key("submissions", key), &key["submissions/".len()..]);
        assert_eq!(
            object_key("learning-submissions", key),
            key,
            "another bucket keeps the key"
        );
        assert_eq!(
            object_key("submissions", "submissions/submissions/a.png"),
            "submissions/a.png",
            "only once"
        );
        assert_eq!(
            object_key("submissions", "submissionsx/a.png"),
            "submissionsx/a.png"
        );
        assert_eq!(object_key("submissions", "submissions/"), "submissions/");
        assert_eq!(object_key("submissions", "c/t/s/a.png"), "c/t/s/a.png");
    }

    #[test]
    fn keys_with_parent_segments_or_backslashes_are_refused() {
        for bad in ["a/../b", "..", "a\\b", "/abs", "", "a/..", "x\0"] {
            assert_eq!(check_key(bad), Err(PathError::Escapes), "{bad:?}");
        }
        assert!(check_key("submissions/c/t/s/1-x.pdf").is_ok());
        assert!(
            check_key("a/./b..c/d").is_ok(),
            "dots inside a name are fine"
        );
    }

    #[test]
    fn object_keys_are_encoded_per_segment() {
        assert_eq!(encode_object_key("course 1/ä.png"), "course%201/%C3%A4.png");
        assert_eq!(encode_object_key("a/b?c#d"), "a/b%3Fc%23d");
    }

    #[test]
    fn verify_checks_size_then_hash() {
        let bytes = b"hello";
        let good = Expected {
            size: Some(5),
            sha256: Some(sha256_hex(bytes)),
        };
        assert!(verify(bytes, &good).is_ok());
        let wrong_size = Expected {
            size: Some(6),
            ..good.clone()
        };
        assert!(matches!(
            verify(bytes, &wrong_size),
            Err(AdapterError::Permanent {
                reason: "size_mismatch",
                ..
            })
        ));
        let wrong_hash = Expected {
            sha256: Some("0".repeat(64)),
            ..good
        };
        assert!(matches!(
            verify(bytes, &wrong_hash),
            Err(AdapterError::Permanent {
                reason: "hash_mismatch",
                ..
            })
        ));
    }

    #[test]
    fn remote_settings_are_validated() {
        assert_eq!(
            RemoteStorage::new("ftp://x", "b", Some(Secret::new("k"))).unwrap_err(),
            RemoteConfigError::Url
        );
        assert_eq!(
            RemoteStorage::new("http://u:p@x", "b", Some(Secret::new("k"))).unwrap_err(),
            RemoteConfigError::Url
        );
        assert_eq!(
            RemoteStorage::new("http://kong:8000", "b", None).unwrap_err(),
            RemoteConfigError::MissingKey
        );
        assert!(RemoteStorage::new("http://kong:8000/", "b", Some(Secret::new("k"))).is_ok());
    }

    #[tokio::test]
    async fn local_reads_refuse_symlinks_out_of_the_root() {
        let base =
            std::env::temp_dir().join(format!("lr-storage-{}", uuid::Uuid::new_v4().simple()));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("outside.png"), b"secret").unwrap();
        std::os::unix::fs::symlink(base.join("outside.png"), root.join("link.png")).unwrap();
        std::fs::write(root.join("ok.png"), b"fine").unwrap();
        let storage = SubmissionStorage {
            root: Some(root.clone()),
            bucket: "submissions".into(),
            remote: None,
        };
        let escaped = storage.read("link.png", &Expected::default()).await;
        assert!(matches!(
            escaped,
            Err(AdapterError::Permanent {
                reason: "path_escape",
                ..
            })
        ));
        assert_eq!(
            storage.read("ok.png", &Expected::default()).await.unwrap(),
            b"fine"
        );
        let missing = storage.read("nope.png", &Expected::default()).await;
        assert!(matches!(
            missing,
            Err(AdapterError::Transient {
                reason: "file_not_found",
                ..
            })
        ));
        std::fs::remove_dir_all(base).unwrap();
    }
}
