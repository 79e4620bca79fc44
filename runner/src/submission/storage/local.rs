//! The local submissions volume (`STORAGE_VERIFY_ROOT`): paths joined below the root, checked
//! lexically and again after resolving symlinks, a regular file read through a
//! [`MAX_FILE_BYTES`] window (a file that grows after its size was checked is still not read
//! further).

use std::path::{Component, Path, PathBuf};

use tokio::io::AsyncReadExt;

use super::{corrupt, over_cap, too_large, Expected, MAX_FILE_BYTES};
use crate::ai::AdapterError;

/// Why a key cannot be used as a path below the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, absolute, `..`, or NUL.
    #[error("storage key is not a relative path below the storage root")]
    Escapes,
}

/// Refuses a path that could leave the root lexically: empty, absolute, a `..` segment, a
/// backslash or NUL. (Keys from the database pass the stricter
/// [`super::keys::SubmissionKey`] first; this guards the paths the runner builds itself.)
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

/// The file below `root` (symlinks resolved, still below the root; a regular file within the
/// size cap), `None` when it does not exist there.
pub async fn read_local(root: &Path, key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
    let escape = || corrupt("path_escape", "storage key points outside the storage root");
    let path = join_under_root(root, key).map_err(|_| escape())?;
    let unavailable = |what: &str| AdapterError::transient("storage_unavailable", what.to_owned());
    let resolved = match tokio::fs::canonicalize(&path).await {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(unavailable("local storage: cannot resolve the file")),
    };
    let canonical_root = tokio::fs::canonicalize(root)
        .await
        .map_err(|_| unavailable("local storage root is not accessible"))?;
    if !resolved.starts_with(&canonical_root) {
        return Err(escape());
    }
    let meta = tokio::fs::metadata(&resolved)
        .await
        .map_err(|_| unavailable("local storage: cannot stat the file"))?;
    if !meta.is_file() {
        return Err(corrupt(
            "not_a_file",
            "storage key does not name a regular file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let unreadable = |_| unavailable("local storage: cannot read the file");
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

    #[tokio::test]
    async fn local_reads_refuse_symlinks_out_of_the_root() {
        let base = std::env::temp_dir().join(format!("lr-local-{}", uuid::Uuid::new_v4().simple()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(base.join("outside.png"), b"secret").unwrap();
        std::os::unix::fs::symlink(base.join("outside.png"), root.join("link.png")).unwrap();
        std::fs::write(root.join("ok.png"), b"fine").unwrap();
        let escaped = read_local(&root, "link.png").await;
        assert!(matches!(
            escaped,
            Err(AdapterError::Permanent {
                reason: "path_escape",
                ..
            })
        ));
        assert_eq!(
            read_local(&root, "ok.png").await.unwrap().as_deref(),
            Some(&b"fine"[..])
        );
        assert_eq!(read_local(&root, "nope.png").await.unwrap(), None);
        assert!(matches!(
            read_local(&root, "dir").await,
            Err(AdapterError::Permanent {
                reason: "not_a_file",
                ..
            })
        ));
        std::fs::remove_dir_all(base).unwrap();
    }
}
