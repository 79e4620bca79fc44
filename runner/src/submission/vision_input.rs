//! What the vision model is shown of a submission: a photo (checked and scaled by
//! [`super::photo`]) or the sheets of a PDF.
//!
//! A PDF's sheets come from the first source that has them, in GUSTAV's order: sheets this
//! runner already made (in memory, or cached in the submission's derived folder), the page
//! images named in `internal_metadata.page_keys`, page images in a derived folder, and
//! finally the PDF itself, rendered in-process. New sheets are cached in the derived folder
//! when the volume is writable, and in memory (bounded) either way, so a retry does not
//! render again. Page images are read and decoded one at a time. Nothing here logs a storage
//! key, a path or file bytes.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::derived::{
    complete_sheet_set, derived_dirs, list_dir, page_file_order, sheet_file_names, write_file,
    STITCHED_NAME,
};
use super::pages::{
    decode_page, is_sheet_sized, looks_like, SheetBuilder, SheetError, Sheets, MAX_PAGES,
};
use super::pdf::{render_pdf, PdfError};
use super::photo::{prepare_photo, PhotoError};
use super::storage::{read_local, Expected, SubmissionKey, SubmissionStorage};
use crate::ai::{AdapterError, VisionRequest};
use crate::job::error_code::ErrorCode;

/// The longest rendering of one PDF may take (checked between pages).
pub const RENDER_BUDGET: Duration = Duration::from_secs(120);
/// Time for everything of the vision phase that is not a model call: storage reads (each
/// bounded by the storage timeout), decoding and rendering.
pub const INPUT_BUDGET: Duration = Duration::from_secs(300);
/// Encoded sheets kept in memory for retries, in bytes, over all submissions.
const MEMORY_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The images for the vision model, in order, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionImages {
    /// Encoded images (PNG or JPEG), one per model call.
    pub images: Arc<Vec<Vec<u8>>>,
    /// Document pages on those images (1 for a photo).
    pub pages: usize,
    /// Pages of the document (more than `pages` when the page cap cut it).
    pub pages_total: usize,
    /// `file`, `photo_scaled`, `memory_cache`, `stitched_cache`, `page_keys`,
    /// `derived_pages` or `rendered`.
    pub source: &'static str,
}

#[derive(Debug, Clone)]
struct CachedSheets {
    id: Uuid,
    images: Arc<Vec<Vec<u8>>>,
    pages: usize,
    pages_total: usize,
}

/// Reads submission files and turns them into [`VisionImages`].
pub struct VisionInputs {
    storage: SubmissionStorage,
    memory: Mutex<VecDeque<CachedSheets>>,
}

fn unsupported_mime(mime: &str) -> AdapterError {
    AdapterError::permanent_with_code(
        ErrorCode::InputUnsupported,
        "unsupported_mime",
        format!("MIME type '{mime}' is not supported (image/jpeg, image/png, application/pdf)"),
    )
}

fn interrupted() -> AdapterError {
    AdapterError::transient("internal_error", "image preparation was interrupted")
}

impl VisionInputs {
    /// Inputs read from `storage`.
    pub fn new(storage: SubmissionStorage) -> Self {
        VisionInputs {
            storage,
            memory: Mutex::new(VecDeque::new()),
        }
    }

    /// The images of `request`'s file. Its storage key is checked (GUSTAV's shape, this
    /// submission's course, task and student) before anything is read.
    pub async fn images_for(&self, request: &VisionRequest) -> Result<VisionImages, AdapterError> {
        let mime = request
            .file
            .mime_type
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            mime.as_str(),
            "image/png" | "image/jpeg" | "application/pdf"
        ) {
            return Err(unsupported_mime(&mime));
        }
        let key = SubmissionKey::upload(&request.file.storage_key, &request.owner)
            .map_err(|e| e.for_upload())?;
        if mime == "application/pdf" {
            self.pdf(request, &key).await
        } else {
            self.photo(request, &key, mime).await
        }
    }

    async fn photo(
        &self,
        request: &VisionRequest,
        key: &SubmissionKey,
        mime: String,
    ) -> Result<VisionImages, AdapterError> {
        let bytes = self.storage.read(key, &expected(request)).await?;
        if !looks_like(&mime, &bytes) {
            return Err(not_an_image(&mime));
        }
        let stored_bytes = bytes.len();
        let mime_for_task = mime.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare_photo(&mime_for_task, bytes))
            .await
            .map_err(|_| interrupted())?
            .map_err(|e| match e {
                PhotoError::TooManyPixels { .. } => AdapterError::permanent_with_code(
                    ErrorCode::InputTooLarge,
                    "too_many_pixels",
                    e.to_string(),
                ),
                PhotoError::Undecodable => not_an_image(&mime),
                PhotoError::TooLargeToDecode => AdapterError::permanent_with_code(
                    ErrorCode::InputTooLarge,
                    "too_large_to_decode",
                    e.to_string(),
                ),
                PhotoError::Encode => AdapterError::transient("internal_error", e.to_string()),
            })?;
        tracing::debug!(
            event = "learning.vision.photo",
            width = prepared.original.0,
            height = prepared.original.1,
            sent_width = prepared.sent.0,
            sent_height = prepared.sent.1,
            stored_bytes,
            sent_bytes = prepared.bytes.len(),
        );
        Ok(VisionImages {
            source: if prepared.transformed {
                "photo_scaled"
            } else {
                "file"
            },
            images: Arc::new(vec![prepared.bytes]),
            pages: 1,
            pages_total: 1,
        })
    }

    async fn pdf(
        &self,
        request: &VisionRequest,
        key: &SubmissionKey,
    ) -> Result<VisionImages, AdapterError> {
        if let Some(hit) = self.memory_hit(request.submission_id) {
            return Ok(hit);
        }
        // The derived folders and their file names, listed once for the cache and the pages.
        let mut folders: Vec<(String, Vec<String>)> = Vec::new();
        if let Some(root) = &self.storage.root {
            for dir in derived_dirs(&self.storage.bucket, &request.owner, request.submission_id) {
                let names = list_dir(root, &dir).await;
                folders.push((dir, names));
            }
            if let Some(hit) = cached_sheets(root, &folders).await {
                self.remember(request.submission_id, &hit);
                return Ok(hit);
            }
        }
        let made = match self.page_images(request, key, &folders).await? {
            Some(made) => made,
            None => self.render(request, key).await?,
        };
        self.remember(request.submission_id, &made);
        if let (Some(root), Some((dir, _))) = (&self.storage.root, folders.first()) {
            store_sheets(root, dir, &made.images).await;
        }
        Ok(made)
    }

    /// Sheets from `page_keys` (every one checked to be a page image of this submission
    /// before any is read), else from a derived folder's page images; `None` when neither has
    /// any page.
    async fn page_images(
        &self,
        request: &VisionRequest,
        upload: &SubmissionKey,
        folders: &[(String, Vec<String>)],
    ) -> Result<Option<VisionImages>, AdapterError> {
        let keys = page_keys(&request.internal_metadata);
        if !keys.is_empty() {
            let keys = keys
                .iter()
                .map(|k| {
                    SubmissionKey::page(k, upload, &request.owner, request.submission_id)
                        .map_err(|e| e.for_page())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut builder = SheetBuilder::new();
            for key in keys.iter().take(MAX_PAGES) {
                let bytes = self.storage.read(key, &Expected::default()).await?;
                builder = push_page(builder, bytes).await?;
            }
            return finish(builder, keys.len(), "page_keys").await.map(Some);
        }
        let Some(root) = &self.storage.root else {
            return Ok(None);
        };
        for (dir, names) in folders {
            let names = page_file_order(names.clone());
            if names.is_empty() {
                continue;
            }
            let mut builder = SheetBuilder::new();
            for name in names.iter().take(MAX_PAGES) {
                let bytes = read_local(root, &format!("{dir}/{name}"))
                    .await?
                    .ok_or_else(|| {
                        AdapterError::transient(
                            "file_not_found",
                            "a page image disappeared while it was read",
                        )
                    })?;
                builder = push_page(builder, bytes).await?;
            }
            return finish(builder, names.len(), "derived_pages")
                .await
                .map(Some);
        }
        Ok(None)
    }

    async fn render(
        &self,
        request: &VisionRequest,
        key: &SubmissionKey,
    ) -> Result<VisionImages, AdapterError> {
        let bytes = self.storage.read(key, &expected(request)).await?;
        if !looks_like("application/pdf", &bytes) {
            return Err(AdapterError::permanent_with_code(
                ErrorCode::InputCorrupt,
                "not_a_pdf",
                "submission file is not a PDF (no %PDF- header)",
            ));
        }
        let deadline = Instant::now() + RENDER_BUDGET;
        let started = Instant::now();
        let rendered = tokio::task::spawn_blocking(move || render_pdf(bytes, deadline))
            .await
            .map_err(|_| {
                AdapterError::permanent(
                    "pdf_render_failed",
                    "the PDF renderer failed on this document",
                )
            })?
            .map_err(pdf_error)?;
        tracing::debug!(
            event = "learning.vision.pdf_rendered",
            pages = rendered.sheets.pages,
            pages_total = rendered.pages_total,
            sheets = rendered.sheets.images.len(),
            bytes = rendered.sheets.byte_len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
        );
        Ok(VisionImages {
            pages: rendered.sheets.pages,
            pages_total: rendered.pages_total,
            images: Arc::new(rendered.sheets.images),
            source: "rendered",
        })
    }

    fn memory_hit(&self, id: Uuid) -> Option<VisionImages> {
        let cache = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().find(|c| c.id == id).map(|c| VisionImages {
            images: c.images.clone(),
            pages: c.pages,
            pages_total: c.pages_total,
            source: "memory_cache",
        })
    }

    fn remember(&self, id: Uuid, images: &VisionImages) {
        let size: usize = images.images.iter().map(Vec::len).sum();
        if size > MEMORY_CACHE_BYTES {
            return;
        }
        let mut cache = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|c| c.id != id);
        let mut total: usize = cache
            .iter()
            .flat_map(|c| c.images.iter())
            .map(Vec::len)
            .sum();
        while total + size > MEMORY_CACHE_BYTES {
            let Some(evicted) = cache.pop_front() else {
                break;
            };
            total -= evicted.images.iter().map(Vec::len).sum::<usize>();
        }
        cache.push_back(CachedSheets {
            id,
            images: images.images.clone(),
            pages: images.pages,
            pages_total: images.pages_total,
        });
    }
}

fn expected(request: &VisionRequest) -> Expected {
    Expected {
        size: request.file.size_bytes,
        sha256: request.file.sha256.clone(),
    }
}

fn not_an_image(mime: &str) -> AdapterError {
    AdapterError::permanent_with_code(
        ErrorCode::InputCorrupt,
        "not_an_image",
        format!("submission file is not a valid {mime} image"),
    )
}

fn pdf_error(e: PdfError) -> AdapterError {
    let message = e.to_string();
    match e {
        PdfError::Encrypted => AdapterError::permanent_with_code(
            ErrorCode::InputUnsupported,
            "pdf_encrypted",
            format!("{message}; it must be uploaded without a password"),
        ),
        PdfError::Unreadable => {
            AdapterError::permanent_with_code(ErrorCode::InputCorrupt, "pdf_unreadable", message)
        }
        PdfError::NoPages => {
            AdapterError::permanent_with_code(ErrorCode::InputCorrupt, "pdf_no_pages", message)
        }
        // The render time depends on the machine's load too: retried like a model timeout.
        PdfError::TooSlow { .. } => AdapterError::transient("pdf_render_timeout", message),
        PdfError::Sheet(_) => AdapterError::transient("internal_error", message),
    }
}

fn sheet_error(e: SheetError) -> AdapterError {
    match e {
        SheetError::BadPage(_) | SheetError::NoPages => AdapterError::permanent_with_code(
            ErrorCode::InputCorrupt,
            "bad_page",
            format!("PDF page images: {e}"),
        ),
        SheetError::Encode(_) => AdapterError::transient("internal_error", e.to_string()),
    }
}

/// Decodes one page image on a blocking thread and adds it to `builder`.
async fn push_page(builder: SheetBuilder, bytes: Vec<u8>) -> Result<SheetBuilder, AdapterError> {
    tokio::task::spawn_blocking(move || {
        let mut builder = builder;
        let page = decode_page(&bytes, builder.pages() + 1)?;
        builder.push(page)?;
        Ok(builder)
    })
    .await
    .map_err(|_| interrupted())?
    .map_err(sheet_error)
}

async fn finish(
    builder: SheetBuilder,
    pages_total: usize,
    source: &'static str,
) -> Result<VisionImages, AdapterError> {
    let sheets: Sheets = tokio::task::spawn_blocking(move || builder.finish())
        .await
        .map_err(|_| interrupted())?
        .map_err(sheet_error)?;
    Ok(VisionImages {
        pages: sheets.pages,
        pages_total,
        images: Arc::new(sheets.images),
        source,
    })
}

/// Sheets this runner cached in one of the listed `folders`: a complete `stitched-<i>-of-<n>.png` set, or a
/// sheet-sized `stitched.png` (a whole-document image of another worker is not reused).
async fn cached_sheets(root: &Path, folders: &[(String, Vec<String>)]) -> Option<VisionImages> {
    for (dir, names) in folders {
        let wanted = match complete_sheet_set(names) {
            Some(set) => set,
            None if names.iter().any(|n| n == STITCHED_NAME) => vec![STITCHED_NAME.to_owned()],
            None => continue,
        };
        let mut images = Vec::with_capacity(wanted.len());
        for name in &wanted {
            match read_local(root, &format!("{dir}/{name}")).await {
                Ok(Some(bytes)) if png_is_sheet_sized(&bytes) => images.push(bytes),
                _ => break,
            }
        }
        if images.len() == wanted.len() {
            let count = images.len();
            return Some(VisionImages {
                images: Arc::new(images),
                pages: count,
                pages_total: count,
                source: "stitched_cache",
            });
        }
    }
    None
}

fn png_is_sheet_sized(bytes: &[u8]) -> bool {
    image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png)
        .into_dimensions()
        .is_ok_and(|(w, h)| is_sheet_sized(w, h))
}

/// Writes the sheets to the derived folder `dir`; a read-only volume only costs a debug line.
async fn store_sheets(root: &Path, dir: &str, images: &[Vec<u8>]) {
    for (name, bytes) in sheet_file_names(images.len()).iter().zip(images) {
        if let Err(e) = write_file(root, &format!("{dir}/{name}"), bytes).await {
            tracing::debug!(
                event = "learning.vision.sheet_cache_unwritable",
                error_kind = ?e.kind(),
                "sheets kept in memory only"
            );
            return;
        }
    }
}

/// The storage keys of pre-rendered PDF pages, in order.
pub fn page_keys(internal_metadata: &serde_json::Value) -> Vec<String> {
    internal_metadata
        .get("page_keys")
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(serde_json::Value::as_str)
                .filter(|k| !k.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_keys_are_read_in_order_and_junk_is_ignored() {
        let meta = json!({"page_keys": ["p1.png", "", " ", 3, "p2.png"]});
        assert_eq!(page_keys(&meta), ["p1.png", "p2.png"]);
        assert!(page_keys(&json!({})).is_empty());
    }
}
