//! A local bare repository to push to, as a test's git remote (`file://`),
//! and a smart-HTTP server in front of bare repositories, as a forge's
//! `https://` remote that asks for credentials.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;

pub struct GitRepo {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    work: PathBuf,
    pub url: String,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        let url = format!("file://{}", bare.display());
        Self {
            _dir: dir,
            bare,
            work,
            url,
        }
    }

    /// Writes the files, commits them on `branch` and pushes; returns the sha.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let has_commits = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.work)
            .output()
            .is_ok_and(|o| o.status.success());
        if has_commits {
            git(&self.work, &["checkout", "-q", "-B", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "--orphan", branch]);
        }
        for (path, content) in files {
            let full = self.work.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(full, content).expect("write file");
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Commits the files on top of `branch` and pushes the commit to
    /// `refname` only (e.g. `refs/pull/7/head`, as a forge keeps a pull
    /// request's head), leaving `branch` where it was; returns the sha.
    pub fn commit_to_ref(
        &self,
        branch: &str,
        refname: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        git(&self.work, &["checkout", "-q", "--detach", branch]);
        for (path, content) in files {
            std::fs::write(self.work.join(path), content).expect("write file");
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &["push", "-q", "-f", "origin", &format!("HEAD:{refname}")],
        );
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["checkout", "-q", branch]);
        sha
    }

    /// Makes `path` in the working tree a symlink to `target` (replacing
    /// what is there); the next [`GitRepo::commit`] commits it.
    pub fn link(&self, path: &str, target: &str) {
        let full = self.work.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        let _ = std::fs::remove_file(&full);
        std::os::unix::fs::symlink(target, full).expect("symlink");
    }

    /// Tags HEAD and pushes the tag.
    pub fn tag(&self, tag: &str) -> String {
        git(&self.work, &["tag", "-f", tag]);
        git(&self.work, &["push", "-q", "-f", "origin", tag]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// One request [`GitHttp`] answered.
#[derive(Debug, Clone)]
pub struct GitRequest {
    /// The path and query asked for (`/remote.git/info/refs?service=...`).
    pub target: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// Whether it was let through to `git http-backend` (else `401`).
    pub authorized: bool,
}

struct GitHttpShared {
    /// The directory whose bare repositories are served.
    root: PathBuf,
    /// The `Authorization` value let through; `None`: everything is.
    expected: Option<String>,
    requests: Mutex<Vec<GitRequest>>,
}

/// `git http-backend` behind a small HTTP server on 127.0.0.1: the smart
/// HTTP protocol git and gix speak to a forge, over the bare repositories
/// under a directory. With credentials, a request without them (or with
/// others) is answered `401` with `WWW-Authenticate: Basic`, as a private
/// repository is. Plain HTTP; put [`crate::tls::tls_proxy`] in front of it
/// for `https://`.
pub struct GitHttp {
    /// `http://127.0.0.1:PORT`: the start of each repository's URL.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<GitHttpShared>,
    /// The actix server; aborting the task stops it.
    server: JoinHandle<std::io::Result<()>>,
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GitHttp {
    /// Serves the bare repositories under `root` (`<root>/x.git` is
    /// `<base>/x.git`), asking for `credentials` (username, password) when given.
    pub async fn start(root: &Path, credentials: Option<(&str, &str)>) -> Self {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("git http server binds");
        let addr = listener.local_addr().expect("git http server address");
        let shared = Arc::new(GitHttpShared {
            root: root.to_path_buf(),
            expected: credentials.map(|(user, password)| {
                format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
            }),
            requests: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(serve_git))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("git http server listens")
        .run();
        Self {
            base: format!("http://{addr}"),
            addr,
            shared,
            server: tokio::spawn(server),
        }
    }

    /// The requests answered so far, in order.
    pub fn requests(&self) -> Vec<GitRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// One request: checked against the credentials, then handed to `git
/// http-backend` as CGI.
async fn serve_git(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<GitHttpShared>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let authorized = shared.expected.is_none() || authorization == shared.expected;
    shared
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(GitRequest {
            target: req.uri().to_string(),
            authorization,
            authorized,
        });
    if !authorized {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Basic realm=\"git\""))
            .finish();
    }
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("PATH_INFO", req.path())
        .env("QUERY_STRING", req.query_string())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(value) = header(name) {
            cgi.env(var, value);
        }
    }
    let Ok(mut child) = cgi.spawn() else {
        return HttpResponse::InternalServerError().body("git http-backend did not start");
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return HttpResponse::InternalServerError().body("git http-backend failed");
    };
    cgi_response(&out.stdout)
}

/// A CGI answer (header lines, a blank line, the body) as an HTTP response.
fn cgi_response(out: &[u8]) -> HttpResponse {
    let (head, body) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => (out, &[][..]),
        },
    };
    let mut response = HttpResponse::Ok();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            if let Some(status) = code.and_then(|c| actix_web::http::StatusCode::from_u16(c).ok()) {
                response.status(status);
            }
        } else {
            response.insert_header((name.trim().to_owned(), value.to_owned()));
        }
    }
    response.body(body.to_vec())
}
