//! Supabase Storage as the fallback source: `GET {SUPABASE_URL}/storage/v1/object/{bucket}/{object}`
//! to one pinned host:port, no redirects, the service key as `apikey` and bearer token, the body
//! read chunk by chunk no further than [`read_cap`].
//!
//! Only a checked [`SubmissionKey`] is fetched: its segments are `[A-Za-z0-9._-]`, none empty,
//! `.` or `..`, so with the bucket (checked at configuration) the URL path cannot leave
//! `/storage/v1/object/{bucket}/`; each segment is still percent-encoded.

use std::time::Duration;

use super::keys::SubmissionKey;
use super::{over_cap, read_cap, Expected};
use crate::ai::AdapterError;
use crate::db::dsn::Secret;

/// Limit of one download from Supabase Storage.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// The object's URL: the bucket, then the key's object name, each segment encoded.
    fn url(&self, key: &SubmissionKey) -> String {
        format!(
            "{}/storage/v1/object/{}/{}",
            self.base,
            encode_object_key(&self.bucket),
            encode_object_key(object_key(&self.bucket, key.as_str()))
        )
    }

    /// The object at `key`, read no further than [`read_cap`] of `expected`.
    pub(super) async fn fetch(
        &self,
        key: &SubmissionKey,
        expected: &Expected,
    ) -> Result<Vec<u8>, AdapterError> {
        let unavailable = |what: String| {
            AdapterError::transient("storage_unavailable", format!("remote storage: {what}"))
        };
        let mut response = self
            .http
            .get(self.url(key))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::SubmissionOwner;

    const KEY: &str = "submissions/6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e/1764922870123-bd154643c9074c7d828e51cc01231baa.jpg";

    #[test]
    fn one_leading_bucket_segment_is_removed_from_object_keys() {
        assert_eq!(object_key("submissions", KEY), &KEY["submissions/".len()..]);
        assert_eq!(
            object_key("learning-submissions", KEY),
            KEY,
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
    fn object_keys_are_encoded_per_segment() {
        assert_eq!(encode_object_key("course 1/ä.png"), "course%201/%C3%A4.png");
        assert_eq!(encode_object_key("a/b?c#d"), "a/b%3Fc%23d");
        assert_eq!(encode_object_key("%2e%2e/x"), "%252e%252e/x");
    }

    #[test]
    fn a_checked_key_stays_inside_the_buckets_object_path() {
        let owner = SubmissionOwner {
            course_id: "6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c".into(),
            task_id: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
            student_sub: "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e".into(),
        };
        let key = SubmissionKey::upload(KEY, &owner).unwrap();
        for (bucket, object) in [
            ("submissions", &KEY["submissions/".len()..]),
            ("learning-submissions", KEY),
        ] {
            let remote =
                RemoteStorage::new("http://kong:8000", bucket, Some(Secret::new("k"))).unwrap();
            assert_eq!(
                remote.url(&key),
                format!("http://kong:8000/storage/v1/object/{bucket}/{object}")
            );
        }
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
}
