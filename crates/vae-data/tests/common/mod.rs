//! A throw-away HTTP server on 127.0.0.1 for the download tests. It stops when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server answers for a path: a status and a body.
pub type Handler = dyn Fn(&str, usize) -> (u16, Vec<u8>) + Send + Sync;

pub struct TestServer {
    pub base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves `handler(path, nth_request_for_that_path)`.
    pub fn start(handler: impl Fn(&str, usize) -> (u16, Vec<u8>) + Send + Sync + 'static) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let path = req.url().to_string();
                let n = {
                    let mut hits = h.lock().unwrap();
                    let c = hits.entry(path.clone()).or_insert(0);
                    *c += 1;
                    *c
                };
                let (status, body) = handler(&path, n);
                let _ = req.respond(tiny_http::Response::from_data(body).with_status_code(status));
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}/"),
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Serves the files under `root` as they are; 404 for anything else.
    pub fn serve_dir(root: PathBuf) -> Self {
        Self::start(
            move |path, _| match std::fs::read(root.join(path.trim_start_matches('/'))) {
                Ok(bytes) => (200, bytes),
                Err(_) => (404, b"not found".to_vec()),
            },
        )
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The product's data directory (`$VAE_DATA_DIR`, else `data/` at the workspace root) with both datasets verified
/// in it, as `cargo xtask download` leaves it; `cargo xtask test` fills it before the tests run.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("VAE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    for dataset in vae_data::Dataset::IDX {
        if let Err(e) = vae_data::verify(&dir, dataset) {
            panic!("{e}\n(the tests read the datasets the product downloaded: run `cargo xtask download --dataset {dataset}`, or `cargo xtask test`, which does)");
        }
    }
    dir
}
