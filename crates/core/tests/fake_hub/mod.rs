//! A stand-in for the Hugging Face hub on a local port (the real one cannot be reached from the
//! machines the tests run on): it serves a folder's files as one repository at one commit,
//! through the two endpoints `hf-hub` uses, and records every request.
//!
//! - `GET /api/models/{repo}/revision/{revision}`: `{"sha": COMMIT, "siblings": [{"rfilename": ...}]}`
//! - `GET /{repo}/resolve/{revision}/{file}`: the file, with the `x-repo-commit` and `etag`
//!   headers, honouring a `Range: bytes=a-b` header with a `206` and `Content-Range`.
//!
//! Shared by the core's and the CLI's tests.

#![allow(dead_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The tiny model both crates test with.
pub fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

/// A new, empty folder for one test, `name`, of the suite `suite`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct FakeHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Relative paths (with `/`) of the files under `dir`.
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            names.extend(files(&entry.path(), &format!("{name}/")));
        } else {
            names.push(name);
        }
    }
    names.sort();
    names
}

impl FakeHub {
    /// Serves `folder`'s files as repository `repo` at `commit`, whatever revision is asked.
    pub fn serve(folder: &Path, repo: &str, commit: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let site = Arc::new(Site {
            folder: folder.to_path_buf(),
            repo: repo.to_string(),
            commit: commit.to_string(),
        });
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (site, log) = (Arc::clone(&site), Arc::clone(&log));
                std::thread::spawn(move || site.answer(stream, &log));
            }
        });
        Self { endpoint, requests }
    }

    /// The paths asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Paths of file downloads asked for so far (`{file}` of `/{repo}/resolve/{revision}/{file}`).
    pub fn files_fetched(&self) -> Vec<String> {
        let mut fetched: Vec<String> = self
            .requests()
            .iter()
            .filter_map(|path| {
                path.split_once("/resolve/")
                    .map(|(_, rest)| rest.split_once('/').unwrap().1.to_string())
            })
            .collect();
        fetched.sort();
        fetched.dedup();
        fetched
    }
}

struct Site {
    folder: PathBuf,
    repo: String,
    commit: String,
}

impl Site {
    fn answer(&self, mut stream: TcpStream, log: &Mutex<Vec<String>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("range")
            {
                range = value.trim().strip_prefix("bytes=").map(str::to_string);
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        log.lock().unwrap().push(path.clone());
        let response = self.route(&path, range.as_deref());
        let _ = stream.write_all(&response);
    }

    fn route(&self, path: &str, range: Option<&str>) -> Vec<u8> {
        let info = format!("/api/models/{}/revision/", self.repo);
        let resolve = format!("/{}/resolve/", self.repo);
        if path.starts_with(&info) {
            let siblings: Vec<String> = files(&self.folder, "")
                .iter()
                .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
                .collect();
            let body = format!(
                "{{\"id\":\"{}\",\"sha\":\"{}\",\"siblings\":[{}]}}",
                self.repo,
                self.commit,
                siblings.join(",")
            );
            return respond(
                "200 OK",
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
            );
        }
        let file = path
            .strip_prefix(&resolve)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, file)| file);
        let Some(content) = file.and_then(|file| std::fs::read(self.folder.join(file)).ok()) else {
            return respond(
                "404 Not Found",
                &[("x-error-code", "EntryNotFound".into())],
                b"not found",
            );
        };
        let mut hasher = DefaultHasher::new();
        content.hash(&mut hasher);
        let headers = vec![
            ("x-repo-commit", self.commit.clone()),
            ("etag", format!("\"{:016x}\"", hasher.finish())),
        ];
        match range.and_then(|r| r.split_once('-')) {
            Some((start, end)) => {
                let start: usize = start.parse().unwrap_or(0);
                let end = end
                    .parse::<usize>()
                    .map_or(content.len(), |e| e + 1)
                    .min(content.len());
                let mut headers = headers;
                headers.push((
                    "Content-Range",
                    format!("bytes {start}-{}/{}", end.max(1) - 1, content.len()),
                ));
                respond(
                    "206 Partial Content",
                    &headers,
                    &content[start.min(end)..end],
                )
            }
            None => respond("200 OK", &headers, &content),
        }
    }
}

fn respond(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
