//! S3 (and S3-compatible) sources: listing a prefix (ListObjectsV2, paginated), cross-checking
//! it with an inventory, downloading objects to a local spool file as a stream (never whole in
//! memory, with bounded retries and backoff), and uploading export files (multipart above a
//! threshold). Credentials, region and endpoint come from the standard AWS chain
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, profiles),
//! overridden by `[s3]` in idx.toml and by flags. The client owns a small tokio runtime and
//! offers blocking calls, so the ingest's reader thread and the export can use it directly.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::inventory::Inventory;
use super::{FoundObject, Location, Scan, ScanScope};
use crate::config::S3Config;
use crate::error::{Error, Result};

/// `s3://bucket/prefix`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Key prefix without a trailing `/`; empty for the whole bucket.
    pub prefix: String,
}

impl S3Url {
    pub fn parse(s: &str) -> Result<S3Url> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| Error::S3(format!("`{s}` is not an s3:// URL (s3://bucket/prefix)")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::S3(format!("`{s}` names no bucket")));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The source root URI rows are traced to.
    pub fn source(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The full key of `rel` under the prefix.
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The key relative to the prefix.
    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(&self.prefix)?.strip_prefix('/')
    }
}

/// An object as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified_ns: i128,
}

/// A connected client with its own runtime; every call blocks.
pub struct S3Client {
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Runtime,
    config: S3Config,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("config", &self.config)
            .finish()
    }
}

type SdkError<E> = aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

/// The HTTP status of the response an SDK error came with, if there was one.
fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Attempts at reading one object's body when the stream breaks mid-download.
const BODY_ATTEMPTS: u32 = 3;

/// A backoff delay spread over [d/2, 3d/2), so clients that failed together do not retry
/// together.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = (u64::from(nanos) * 2654435761) % 1000;
    delay / 2 + delay.mul_f64(spread as f64 / 1000.0)
}

/// The error of a failed request, its kind decided by the status or the transport failure.
fn request_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E>,
    what: &str,
) -> Error {
    use crate::error::ErrorKind;
    use aws_sdk_s3::error::SdkError as E0;
    let kind = match status_of(e) {
        Some(401 | 403) => ErrorKind::Denied,
        Some(404) => ErrorKind::NotFound,
        Some(408 | 429) => ErrorKind::Transient,
        Some(s) if s >= 500 => ErrorKind::Transient,
        Some(_) => ErrorKind::Invalid,
        None => match e {
            E0::TimeoutError(_) | E0::DispatchFailure(_) | E0::ResponseError(_) => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Invalid,
        },
    };
    Error::S3Request {
        kind,
        message: describe(e, what),
    }
}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E>,
    what: &str,
) -> String {
    match status_of(e) {
        Some(403) => {
            format!("{what}: access denied (HTTP 403); check the credentials and the bucket policy")
        }
        Some(404) => format!("{what}: not found (HTTP 404)"),
        Some(code) => format!(
            "{what}: HTTP {code}{}",
            e.message().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        None => format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(e)),
    }
}

impl S3Client {
    /// Build a client from the standard chain plus `config`'s overrides.
    pub fn connect(config: &S3Config) -> Result<S3Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("idx-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::S3(format!("cannot start the S3 runtime: {e}")))?;
        let client = runtime.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(profile) = &config.profile {
                loader = loader.profile_name(profile);
            }
            if let Some(region) = &config.region {
                loader = loader.region(aws_config::Region::new(region.clone()));
            }
            if let Some((key, secret)) = &config.credentials {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    key, secret, None, None, "idx",
                ));
            }
            let shared = loader.load().await;
            let mut b = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(config.path_style)
                .retry_config(
                    aws_sdk_s3::config::retry::RetryConfig::standard()
                        .with_max_attempts(config.max_attempts.max(1)),
                )
                .timeout_config(
                    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .read_timeout(Duration::from_secs(60))
                        .build(),
                );
            if shared.region().is_none() && config.region.is_none() {
                // S3-compatible endpoints often need none; the SDK needs one to sign.
                b = b.region(aws_config::Region::new("us-east-1"));
            }
            if let Some(endpoint) = &config.endpoint {
                b = b.endpoint_url(endpoint);
            }
            aws_sdk_s3::Client::from_conf(b.build())
        });
        Ok(S3Client {
            client,
            runtime,
            config: config.clone(),
        })
    }

    /// Every object under a prefix, sorted by key.
    pub fn list(&self, url: &S3Url) -> Result<Vec<Listed>> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = self.client.list_objects_v2().bucket(&url.bucket);
                if !url.prefix.is_empty() {
                    req = req.prefix(format!("{}/", url.prefix));
                }
                if let Some(t) = &token {
                    req = req.continuation_token(t);
                }
                let page = req
                    .send()
                    .await
                    .map_err(|e| request_error(&e, &format!("listing {}", url.source())))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    out.push(Listed {
                        key: key.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        etag: o.e_tag().unwrap_or("").trim_matches('"').to_string(),
                        last_modified_ns: o.last_modified().map_or(0, |t| t.as_nanos()),
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    /// Stream one object into `dest` (created or truncated); retries the whole download on
    /// transient failures, with exponential backoff. Returns the bytes written. The error names
    /// the bucket and key.
    pub fn download(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
    ) -> std::result::Result<u64, String> {
        let what = format!("s3://{bucket}/{key}");
        // The SDK retries the request itself (its standard policy, `max_attempts`); this loop
        // only starts again a body stream that broke mid-download, a few times, with jitter.
        let attempts = BODY_ATTEMPTS;
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let result: std::result::Result<u64, (bool, String)> = self.runtime.block_on(async {
                let out = self
                    .client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| (false, describe(&e, &what)))?;
                let mut body = out.body;
                let mut file = std::fs::File::create(dest)
                    .map_err(|e| (false, format!("{}: {e}", dest.display())))?;
                let mut n = 0u64;
                loop {
                    match body.try_next().await {
                        Ok(Some(chunk)) => {
                            file.write_all(&chunk)
                                .map_err(|e| (false, format!("{}: {e}", dest.display())))?;
                            n += chunk.len() as u64;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return Err((
                                true,
                                format!("{what}: connection lost after {n} bytes: {e}"),
                            ))
                        }
                    }
                }
                file.sync_all().ok();
                Ok(n)
            });
            match result {
                Ok(n) => return Ok(n),
                Err((retry, message)) => {
                    last = message;
                    if !retry || attempt == attempts {
                        break;
                    }
                    std::thread::sleep(jittered(delay));
                    delay *= 2;
                }
            }
        }
        Err(last)
    }

    /// A small object whole (an inventory file).
    pub fn get_bytes(&self, url: &S3Url) -> Result<Vec<u8>> {
        self.runtime.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&url.bucket)
                .key(&url.prefix)
                .send()
                .await
                .map_err(|e| request_error(&e, &url.source()))?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| Error::S3(format!("{}: {e}", url.source())))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }

    /// Upload a local file to `bucket/key`: one PUT below `multipart_bytes`, else a multipart
    /// upload in parts of that size (aborted on failure, so no half object is left behind).
    pub fn upload(&self, path: &Path, bucket: &str, key: &str) -> Result<()> {
        let what = format!("s3://{bucket}/{key}");
        let size = std::fs::metadata(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let part = self.config.multipart_bytes.max(1);
        self.runtime.block_on(async {
            if size <= part {
                let body = ByteStream::from_path(path)
                    .await
                    .map_err(|e| Error::S3(format!("{}: {e}", path.display())))?;
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| request_error(&e, &format!("uploading {what}")))?;
                return Ok(());
            }
            let created = self
                .client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| request_error(&e, &format!("starting the upload of {what}")))?;
            let upload_id = created.upload_id().unwrap_or_default().to_string();
            let parts = async {
                let mut parts = Vec::new();
                let mut offset = 0u64;
                let mut number = 1i32;
                while offset < size {
                    let len = part.min(size - offset);
                    let body = ByteStream::read_from()
                        .path(path)
                        .offset(offset)
                        .length(aws_sdk_s3::primitives::Length::Exact(len))
                        .build()
                        .await
                        .map_err(|e| Error::S3(format!("{}: {e}", path.display())))?;
                    let done = self
                        .client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| {
                            request_error(&e, &format!("uploading part {number} of {what}"))
                        })?;
                    parts.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(done.e_tag().map(str::to_string))
                            .build(),
                    );
                    offset += len;
                    number += 1;
                }
                Ok::<_, Error>(parts)
            }
            .await;
            let parts = match parts {
                Ok(p) => p,
                Err(e) => {
                    let _ = self
                        .client
                        .abort_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .send()
                        .await;
                    return Err(e);
                }
            };
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| request_error(&e, &format!("completing the upload of {what}")))?;
            Ok(())
        })
    }

    /// Delete one object if it exists (replacing an older export's manifest first).
    pub fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.runtime.block_on(async {
            match self
                .client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // AWS answers 204 for a missing key; some S3-compatible stores answer 404.
                Err(e) if status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(request_error(&e, &format!("deleting s3://{bucket}/{key}"))),
            }
        })
    }
}

/// Scan an S3 prefix. With an inventory, it says what exists (objects under the prefix); the
/// listing cross-checks it: inventory objects the bucket lacks come back in `missing`, objects
/// the inventory lacks are scanned too, with a warning. Without one, the listing is the truth.
///
/// S3 never deletes on doubt: when the listing fails, an inventory's keys are the only ones
/// scanned (nothing outside them can be taken for deleted); without an inventory the listing's
/// error is returned (the ingest turns it into a scan error that changes nothing).
pub fn scan(client: &S3Client, url: &S3Url, inventory: Option<&Inventory>) -> Result<S3Scan> {
    let mut warnings = Vec::new();
    let listing = match client.list(url) {
        Ok(l) => Some(l),
        Err(e) if inventory.is_some() => {
            warnings.push(format!(
                "{e}; going by the inventory alone (objects it lists are fetched directly, nothing else is taken for deleted)"
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let mut objects: BTreeMap<String, FoundObject> = BTreeMap::new();
    let mut missing = Vec::new();
    let found = |key: &str, size: u64, etag: &str, ns: i128| FoundObject {
        key: url.relative(key).unwrap_or(key).to_string(),
        location: Location::S3 {
            bucket: url.bucket.clone(),
            key: key.to_string(),
        },
        size,
        mtime_ns: ns,
        etag: Some(etag.to_string()),
    };
    let listed: BTreeMap<&str, &Listed> = listing
        .iter()
        .flatten()
        .map(|l| (l.key.as_str(), l))
        .collect();
    if let Some(inv) = inventory {
        if let Some(b) = &inv.bucket {
            if b != &url.bucket {
                warnings.push(format!(
                    "the inventory describes bucket `{b}`, the source is `{}`",
                    url.bucket
                ));
            }
        }
        for o in inv.under(&url.prefix) {
            if url.relative(&o.key).is_none() {
                continue;
            }
            match (&listing, listed.get(o.key.as_str())) {
                (Some(_), None) => missing.push(o.key.clone()),
                (Some(_), Some(l)) => {
                    let f = found(&l.key, l.size, &l.etag, l.last_modified_ns);
                    objects.insert(f.key.clone(), f);
                }
                (None, _) => {
                    let f = found(&o.key, o.size, &o.etag, o.last_modified_ns);
                    objects.insert(f.key.clone(), f);
                }
            }
        }
        let mut extra = 0;
        for l in listing.iter().flatten() {
            let f = found(&l.key, l.size, &l.etag, l.last_modified_ns);
            if !objects.contains_key(&f.key) {
                extra += 1;
                objects.insert(f.key.clone(), f);
            }
        }
        if extra > 0 {
            warnings.push(format!(
                "{extra} objects under {} are not in the inventory (indexed anyway; the inventory may be stale)",
                url.source()
            ));
        }
    } else {
        for l in listing.iter().flatten() {
            if url.relative(&l.key).is_none() || l.key.ends_with('/') {
                continue;
            }
            let f = found(&l.key, l.size, &l.etag, l.last_modified_ns);
            objects.insert(f.key.clone(), f);
        }
    }
    // Without a listing, only the inventory's keys were looked at.
    let scope = match listing {
        Some(_) => ScanScope::All,
        None => ScanScope::Keys(objects.keys().cloned().collect()),
    };
    Ok(S3Scan {
        scan: Scan {
            source: url.source(),
            objects: objects.into_values().collect(),
            scope,
            errors: Vec::new(),
        },
        missing: missing
            .into_iter()
            .map(|k| url.relative(&k).unwrap_or(&k).to_string())
            .collect(),
        warnings,
    })
}

/// An S3 prefix, listed through `client`, cross-checked with an inventory when there is one.
#[derive(Debug, Clone)]
pub struct S3Source {
    pub client: Arc<S3Client>,
    pub url: S3Url,
    pub inventory: Option<Arc<Inventory>>,
}

impl super::Source for S3Source {
    fn describe(&self) -> String {
        self.url.source()
    }

    fn remote(&self) -> bool {
        true
    }

    fn scan(&self) -> Result<super::Found> {
        let found = scan(&self.client, &self.url, self.inventory.as_deref())?;
        Ok(super::Found {
            scan: found.scan,
            missing: found.missing,
            warnings: found.warnings,
        })
    }

    fn open(&self, object: &FoundObject, spool: &Path) -> std::result::Result<File, String> {
        let Location::S3 { bucket, key } = &object.location else {
            return Err(format!("{:?} is not an S3 object", object.location));
        };
        std::fs::create_dir_all(spool).map_err(|e| format!("{}: {e}", spool.display()))?;
        let path = spool.join("object");
        self.client.download(bucket, key, &path)?;
        let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // The open handle keeps the bytes; the name is reused by the next download.
        let _ = std::fs::remove_file(&path);
        Ok(file)
    }
}

/// What scanning an S3 prefix found.
#[derive(Debug, Clone)]
pub struct S3Scan {
    pub scan: Scan,
    /// Keys (relative to the prefix) the inventory lists and the bucket does not have.
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
}
