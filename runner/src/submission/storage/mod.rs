//! Submission bytes: from the local submissions volume (`STORAGE_VERIFY_ROOT`) with path,
//! size and SHA-256 checks, else from Supabase Storage over HTTP (one pinned host:port, no
//! redirects, the service key as `apikey` and bearer token).
//!
//! A key from the database is read only as a [`SubmissionKey`]: GUSTAV's exact key shape, with
//! the submission's own course, task and student ([`keys`]), checked before any I/O, for
//! local and remote reads alike.
//!
//! Memory is bounded by the input: a local file is read through a [`MAX_FILE_BYTES`] window
//! ([`local`]); a download is read chunk by chunk and stopped as soon as it passes the
//! recorded `size_bytes` (anything more can only fail the size check) or [`MAX_FILE_BYTES`],
//! whichever is smaller ([`remote`]).
//!
//! Outcomes follow contract §7: a refused key, a path escape, a size or hash mismatch are
//! permanent (`input_corrupt`), an oversized file is `input_too_large`, a file that cannot be
//! fetched is transient. Messages never contain storage keys, bucket names or the key.

pub mod keys;
mod local;
mod remote;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub use self::keys::{KeyError, SubmissionKey};
pub use self::local::{check_key, join_under_root, read_local, PathError};
pub use self::remote::{
    encode_object_key, object_key, RemoteConfigError, RemoteStorage, REMOTE_TIMEOUT,
};
use crate::ai::AdapterError;
use crate::job::error_code::ErrorCode;

/// The largest submission file, in bytes (contract §1).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// What the database says the file must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `size_bytes`.
    pub size: Option<i32>,
    /// `sha256`, lower-case hex.
    pub sha256: Option<String>,
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
    /// Reads the file at the checked `key`, local first, then remote, and verifies it against
    /// `expected`.
    pub async fn read(
        &self,
        key: &SubmissionKey,
        expected: &Expected,
    ) -> Result<Vec<u8>, AdapterError> {
        if let Some(root) = &self.root {
            if let Some(bytes) = read_local(root, key.as_str()).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::SubmissionOwner;

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

    #[tokio::test]
    async fn a_checked_key_is_read_locally_and_a_symlink_out_of_the_root_is_refused() {
        let owner = SubmissionOwner {
            course_id: "6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c".into(),
            task_id: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
            student_sub: "s1".into(),
        };
        let dir = format!("submissions/{}/{}/s1", owner.course_id, owner.task_id);
        let key = |ms: &str| {
            let raw = format!("{dir}/{ms}-bd154643c9074c7d828e51cc01231baa.png");
            SubmissionKey::upload(&raw, &owner).unwrap()
        };
        let (ok, link, missing) = (
            key("1764922870001"),
            key("1764922870002"),
            key("1764922870003"),
        );
        let base =
            std::env::temp_dir().join(format!("lr-storage-{}", uuid::Uuid::new_v4().simple()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join(&dir)).unwrap();
        std::fs::write(base.join("outside.png"), b"secret").unwrap();
        std::os::unix::fs::symlink(base.join("outside.png"), root.join(link.as_str())).unwrap();
        std::fs::write(root.join(ok.as_str()), b"fine").unwrap();
        let storage = SubmissionStorage {
            root: Some(root),
            bucket: "submissions".into(),
            remote: None,
        };
        assert!(matches!(
            storage.read(&link, &Expected::default()).await,
            Err(AdapterError::Permanent {
                reason: "path_escape",
                ..
            })
        ));
        assert_eq!(
            storage.read(&ok, &Expected::default()).await.unwrap(),
            b"fine"
        );
        assert!(matches!(
            storage.read(&missing, &Expected::default()).await,
            Err(AdapterError::Transient {
                reason: "file_not_found",
                ..
            })
        ));
        std::fs::remove_dir_all(base).unwrap();
    }
}
