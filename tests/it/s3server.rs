//! A real S3 protocol server in-process for tests: `s3s` over `s3s-fs` (objects are files under
//! a temporary folder, `ROOT/bucket/key`), served with hyper-util on 127.0.0.1 on its own tokio
//! runtime. Requests are signed (SigV4) and checked. Keys containing `forbidden` answer GetObject
//! with 403 while `deny` is set. Faults on demand: `deny_list` answers ListObjectsV2 with 403,
//! `fail_gets` answers that many GetObject requests with 500 before serving them again, and
//! `cut_bodies` makes a proxy in front of the server (the endpoint clients get) drop that many
//! object downloads after their headers and a few bytes of body, as a broken connection would.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use idx::config::S3Config;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Result};

pub const ACCESS_KEY: &str = "idx-test-access";
pub const SECRET_KEY: &str = "idx-test-secret-key";

pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    pub deny: Arc<AtomicBool>,
    pub deny_list: Arc<AtomicBool>,
    pub fail_gets: Arc<AtomicU32>,
    pub cut_bodies: Arc<AtomicU32>,
    _runtime: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
}

struct Access {
    deny: Arc<AtomicBool>,
    deny_list: Arc<AtomicBool>,
    fail_gets: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        let op = cx.s3_op().name();
        if op == "ListObjectsV2" && self.deny_list.load(Ordering::SeqCst) {
            return Err(s3_error!(AccessDenied, "test rule: no ListBucket"));
        }
        if op == "GetObject"
            && self
                .fail_gets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(s3_error!(InternalError, "test rule: a failing server"));
        }
        if let S3Path::Object { key, .. } = cx.s3_path() {
            if cx.s3_op().name() == "GetObject"
                && key.contains("forbidden")
                && self.deny.load(Ordering::SeqCst)
            {
                return Err(s3_error!(AccessDenied, "test rule: forbidden key"));
            }
        }
        Ok(())
    }
}

impl S3Server {
    pub fn start() -> S3Server {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("s3");
        std::fs::create_dir_all(&root).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let deny = Arc::new(AtomicBool::new(true));
        let deny_list = Arc::new(AtomicBool::new(false));
        let fail_gets = Arc::new(AtomicU32::new(0));
        let service = {
            let mut b = S3ServiceBuilder::new(s3s_fs::FileSystem::new(&root).unwrap());
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.set_access(Access {
                deny: deny.clone(),
                deny_list: deny_list.clone(),
                fail_gets: fail_gets.clone(),
            });
            b.build()
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let cut_bodies = Arc::new(AtomicU32::new(0));
        let proxy = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        runtime.spawn(run_proxy(proxy, addr, cut_bodies.clone()));
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let conn = ConnBuilder::new(TokioExecutor::new());
                    let _ = conn.serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        S3Server {
            endpoint: format!("http://{proxy_addr}"),
            root,
            deny,
            deny_list,
            fail_gets,
            cut_bodies,
            _runtime: runtime,
            _tmp: tmp,
        }
    }

    /// Client settings for this server.
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            region: Some("us-east-1".to_string()),
            max_attempts: 2,
            credentials: Some((ACCESS_KEY.to_string(), SECRET_KEY.to_string())),
            ..S3Config::default()
        }
    }

    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// Write an object directly into the store.
    pub fn put(&self, bucket: &str, key: &str, body: impl AsRef<[u8]>) {
        let p = self.root.join(bucket).join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        std::fs::remove_file(self.root.join(bucket).join(key)).unwrap();
    }

    pub fn read(&self, bucket: &str, key: &str) -> Vec<u8> {
        std::fs::read(self.root.join(bucket).join(key)).unwrap()
    }
}

/// Forward every connection to the server; while `cut` is above zero, an object download (a 200
/// response with a body that is not XML) is cut after its headers and a few bytes, and `cut`
/// goes down by one.
async fn run_proxy(
    listener: tokio::net::TcpListener,
    server: std::net::SocketAddr,
    cut: Arc<AtomicU32>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                return;
            };
            let (mut client_in, mut client_out) = client.into_split();
            let (mut server_in, mut server_out) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
                let _ = server_out.shutdown().await;
            });
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match server_in.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                if is_object_download(chunk)
                    && cut
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                        .is_ok()
                {
                    let head = chunk
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(n, |p| p + 4);
                    let _ = client_out.write_all(&chunk[..(head + 8).min(n)]).await;
                    let _ = client_out.shutdown().await;
                    return;
                }
                if client_out.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = client_out.shutdown().await;
        });
    }
}

fn is_object_download(chunk: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&chunk[..chunk.len().min(2048)]).to_ascii_lowercase();
    text.starts_with("http/1.1 200")
        && text.contains("last-modified:")
        && !text.contains("content-type: application/xml")
        && text
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|len| len > 16)
}
