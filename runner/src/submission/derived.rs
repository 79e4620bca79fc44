//! The derived folder of a PDF submission on the shared submissions volume: where GUSTAV's web
//! app and worker keep page images (`page_*.png`) and the stitched image (`stitched.png`) of a
//! PDF. GUSTAV's layout is `<bucket>/<course>/<task>/<student>/derived/<submission>/` below
//! the root, and the older `<course>/<task>/<student>/derived/<submission>/`.
//!
//! This runner writes its sheets there as a cache for retries: `stitched.png` when the
//! document is one sheet (the file the original worker writes and reads), else
//! `stitched-<i>-of-<n>.png`. Paths are built from the submission row, checked segment by
//! segment, and never logged (the student id is part of them).

use std::path::Path;

use uuid::Uuid;

use super::storage::join_under_root;
use super::storage::keys::is_plain_segment;
use crate::ai::SubmissionOwner;

/// The name of a one-sheet document's cached image (the original worker's name).
pub const STITCHED_NAME: &str = "stitched.png";

/// The derived folders of a submission, relative to the root, in the order they are searched
/// (GUSTAV's order); empty when an owner field is not a safe path segment.
pub fn derived_dirs(bucket: &str, owner: &SubmissionOwner, submission_id: Uuid) -> Vec<String> {
    let tail = [
        owner.course_id.as_str(),
        owner.task_id.as_str(),
        owner.student_sub.as_str(),
    ];
    if !tail.iter().all(|s| is_plain_segment(s)) {
        return Vec::new();
    }
    let tail = format!("{}/derived/{submission_id}", tail.join("/"));
    let mut dirs = Vec::with_capacity(2);
    if is_plain_segment(bucket) {
        dirs.push(format!("{bucket}/{tail}"));
    }
    dirs.push(tail);
    dirs
}

/// The page image names among `names` (`page_*.png`, any case of the extension), in page
/// order: by the number after `page_` (so `page_10` follows `page_9`), then by name.
pub fn page_file_order(names: Vec<String>) -> Vec<String> {
    let mut pages: Vec<(u64, String)> = names
        .into_iter()
        .filter(|n| n.starts_with("page_") && n.to_ascii_lowercase().ends_with(".png"))
        .map(|n| {
            let number = n["page_".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(u64::MAX);
            (number, n)
        })
        .collect();
    pages.sort();
    pages.into_iter().map(|(_, n)| n).collect()
}

/// The cache file names of a document of `sheets` sheets.
pub fn sheet_file_names(sheets: usize) -> Vec<String> {
    if sheets == 1 {
        return vec![STITCHED_NAME.to_owned()];
    }
    (1..=sheets)
        .map(|i| format!("stitched-{i}-of-{sheets}.png"))
        .collect()
}

/// The complete multi-sheet cache among `names` (every `stitched-<i>-of-<n>.png` for
/// `i = 1..=n`), in order; `None` when there is none.
pub fn complete_sheet_set(names: &[String]) -> Option<Vec<String>> {
    let mut totals: Vec<usize> = names
        .iter()
        .filter_map(|n| {
            let rest = n.strip_prefix("stitched-")?.strip_suffix(".png")?;
            let (_, total) = rest.split_once("-of-")?;
            // Only totals this runner can write: a hostile name must not make it list
            // billions of names.
            total
                .parse()
                .ok()
                .filter(|t| (2..=super::pages::MAX_SHEETS).contains(t))
        })
        .collect();
    totals.sort_unstable();
    totals.dedup();
    totals.into_iter().rev().find_map(|total| {
        let wanted = sheet_file_names(total);
        wanted.iter().all(|w| names.contains(w)).then_some(wanted)
    })
}

/// The file names in `dir_key` below `root`; empty when the folder does not exist, cannot
/// be read, or resolves outside the root.
pub async fn list_dir(root: &Path, dir_key: &str) -> Vec<String> {
    let Ok(path) = join_under_root(root, dir_key) else {
        return Vec::new();
    };
    let (Ok(resolved), Ok(canonical_root)) = (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(root).await,
    ) else {
        return Vec::new();
    };
    if !resolved.starts_with(&canonical_root) {
        return Vec::new();
    }
    let Ok(mut entries) = tokio::fs::read_dir(&resolved).await else {
        return Vec::new();
    };
    let mut names = Vec::new();
    // A derived folder holds a page per file: a bound well above MAX_PAGES keeps a hostile
    // folder from costing unbounded memory.
    while let Ok(Some(entry)) = entries.next_entry().await {
        if names.len() >= 4096 {
            break;
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names
}

/// Writes `bytes` to `key` below `root` (folders created, the file written under a temporary
/// name and renamed, so a reader never sees half a file). Fails when the volume is read-only
/// or the folder resolves outside the root.
pub async fn write_file(root: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = join_under_root(root, key)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsafe key"))?;
    let outside = || {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "folder outside the root",
        )
    };
    let canonical_root = tokio::fs::canonicalize(root).await?;
    // Create the folders one at a time, each checked to resolve below the root before the
    // next is made inside it: a symlinked folder can never make us create one elsewhere.
    let mut resolved = canonical_root.clone();
    let folders: Vec<&str> = key
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    for folder in &folders[..folders.len().saturating_sub(1)] {
        let next = resolved.join(folder);
        match tokio::fs::create_dir(&next).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        resolved = tokio::fs::canonicalize(&next).await?;
        if !resolved.starts_with(&canonical_root) {
            return Err(outside());
        }
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = resolved.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    tokio::fs::write(&temporary, bytes).await?;
    let target = resolved.join(path.file_name().unwrap_or_default());
    if let Err(e) = tokio::fs::rename(&temporary, &target).await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COURSE: &str = "6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c";
    const TASK: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const SUB: &str = "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e";

    fn owner(sub: &str) -> SubmissionOwner {
        SubmissionOwner {
            course_id: COURSE.into(),
            task_id: TASK.into(),
            student_sub: sub.into(),
        }
    }

    #[test]
    fn derived_folders_follow_gustavs_layouts_in_its_order() {
        let id = Uuid::nil();
        assert_eq!(
            derived_dirs("submissions", &owner(SUB), id),
            [
                format!("submissions/{COURSE}/{TASK}/{SUB}/derived/{id}"),
                format!("{COURSE}/{TASK}/{SUB}/derived/{id}"),
            ]
        );
        assert!(derived_dirs("submissions", &owner("../x"), id).is_empty());
        assert!(derived_dirs("submissions", &owner("a/b"), id).is_empty());
        assert!(derived_dirs("submissions", &owner(""), id).is_empty());
    }

    #[test]
    fn page_files_sort_by_number() {
        let names = [
            "page_10.png",
            "stitched.png",
            "page_2.png",
            "page_0001.PNG",
            "notes.txt",
            "page_x.png",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            page_file_order(names),
            ["page_0001.PNG", "page_2.png", "page_10.png", "page_x.png"]
        );
    }

    #[test]
    fn sheet_caches_are_named_and_found_complete() {
        assert_eq!(sheet_file_names(1), ["stitched.png"]);
        assert_eq!(
            sheet_file_names(2),
            ["stitched-1-of-2.png", "stitched-2-of-2.png"]
        );
        let names: Vec<String> = [
            "stitched-2-of-3.png",
            "stitched-1-of-3.png",
            "page_1.png",
            "stitched-3-of-3.png",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(complete_sheet_set(&names), Some(sheet_file_names(3)));
        let partial: Vec<String> = ["stitched-1-of-3.png", "stitched-3-of-3.png"]
            .map(String::from)
            .to_vec();
        assert_eq!(complete_sheet_set(&partial), None);
        assert_eq!(complete_sheet_set(&["stitched.png".to_owned()]), None);
        let absurd = vec!["stitched-1-of-99999999999.png".to_owned()];
        assert_eq!(
            complete_sheet_set(&absurd),
            None,
            "totals above MAX_SHEETS are ignored"
        );
    }

    #[tokio::test]
    async fn files_are_written_and_listed_below_the_root_only() {
        let base = std::env::temp_dir().join(format!("lr-derived-{}", Uuid::new_v4().simple()));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        write_file(&root, "a/b/derived/x/stitched.png", b"png")
            .await
            .unwrap();
        assert_eq!(list_dir(&root, "a/b/derived/x").await, ["stitched.png"]);
        assert_eq!(
            std::fs::read(root.join("a/b/derived/x/stitched.png")).unwrap(),
            b"png"
        );
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), root.join("link")).unwrap();
        assert!(write_file(&root, "link/stitched.png", b"png")
            .await
            .is_err());
        assert!(list_dir(&root, "link").await.is_empty());
        assert!(list_dir(&root, "missing").await.is_empty());
        assert!(write_file(&root, "../escape.png", b"x").await.is_err());
        std::fs::remove_dir_all(base).unwrap();
    }
}
