//! `vae-train export-web` as a user runs it: the command's refusals, and the static site it writes served by a
//! plain file server and driven in a real browser (headless Chromium through chromedriver, as `serve`'s test does),
//! its POST calls answered by the model in WebAssembly.
#![cfg(all(feature = "cli", feature = "serve"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::browser::*;
use common::{conditional_model, data_dir, shipped_model};
use fantoccini::Client;
use serde_json::{json, Value};

// --- the command ----------------------------------------------------------------------------------------------------

/// `vae-train export-web` of `model` into `out` with more `flags`: its exit code, stdout and stderr.
fn export_web(model: &Path, out: &Path, flags: &[&str]) -> (Option<i32>, String, String) {
    let (model, out) = (model.to_str().unwrap(), out.to_str().unwrap());
    let args = ["export-web", "--model", model, "--out", out];
    common::vae_train(&[&args[..], flags].concat())
}

/// The site of `model` in `out`, with the MNIST test set; the test fails here when `export-web` does (a binary
/// built without the WebAssembly module says so).
fn export(model: &Path, out: &Path) {
    let data = data_dir().to_str().unwrap();
    let (code, _, err) = export_web(model, out, &["--data-dir", data]);
    assert_eq!(code, Some(0), "export-web of {}: {err}", model.display());
}

/// The one line of an error on stderr (a failing command prints nothing else).
fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err:?}");
    lines[0]
}

/// Every file under `dir` by its path relative to `dir` (`/`-separated), with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_str().unwrap();
                files.insert(rel.replace('\\', "/"), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The names in `dir` that a failed or finished export must not leave behind: its temporary folders.
fn leftovers(dir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name());
    let names = names.map(|n| n.to_string_lossy().into_owned());
    names
        .filter(|n| n.starts_with(".export-web-") || n.contains(".replaced-"))
        .collect()
}

/// The files a site of the shipped model (20-D, no run beside it) holds.
fn shipped_site_files() -> BTreeSet<String> {
    let top = [
        "index.html",
        "explorer.js",
        "explorer.css",
        "site.json",
        "model.safetensors",
        "vae_web.js",
        "vae_web_bg.wasm",
        "api/model",
    ];
    let tests = (0..100).map(|i| format!("api/test/{i}"));
    top.iter().map(|s| s.to_string()).chain(tests).collect()
}

/// What `--overwrite` leaves in `out`: the whole site of the shipped model, the page `serve` serves, and nothing
/// of what was there.
fn assert_is_the_shipped_site(out: &Path) {
    let files = files_under(out);
    let names: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(names, shipped_site_files());
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/explorer");
    for name in ["index.html", "explorer.js", "explorer.css"] {
        assert_eq!(
            files[name],
            std::fs::read(assets.join(name)).unwrap(),
            "{name}"
        );
    }
    let site: Value = serde_json::from_slice(&files["site.json"]).unwrap();
    assert_eq!(
        site,
        json!({"backend": "wasm", "model": "model.safetensors"})
    );
    assert_eq!(
        files["model.safetensors"],
        std::fs::read(shipped_model()).unwrap()
    );
    assert!(
        files["vae_web_bg.wasm"].starts_with(b"\0asm"),
        "a wasm module"
    );
    let glue = String::from_utf8_lossy(&files["vae_web.js"]);
    assert!(glue.contains("WebExplorer"), "wasm-bindgen's glue");
    let info: Value = serde_json::from_slice(&files["api/model"]).unwrap();
    assert_eq!(
        (&info["test_images"], &info["config"]["latent_dim"]),
        (&json!(100), &json!(20))
    );
}

#[test]
fn a_folder_that_holds_something_is_refused_and_with_overwrite_replaced_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    std::fs::create_dir_all(out.join("notes")).unwrap();
    std::fs::write(out.join("notes/mine.txt"), "keep me").unwrap();
    std::fs::write(out.join("index.html"), "not the explorer").unwrap();
    let before = files_under(&out);
    let (code, stdout, err) = export_web(&shipped_model(), &out, &[]);
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert_eq!(stdout, "");
    let line = one_line(&err);
    assert!(
        line.contains(out.to_str().unwrap()) && line.contains("--overwrite"),
        "{line}"
    );
    assert_eq!(files_under(&out), before, "the folder is untouched");

    // --overwrite replaces only a site export-web wrote: these files are kept too.
    let data = data_dir().to_str().unwrap();
    let (code, _, err) = export_web(&shipped_model(), &out, &["--overwrite", "--data-dir", data]);
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert!(one_line(&err).contains("no site.json"), "{err}");
    assert_eq!(files_under(&out), before, "the folder is untouched");

    // A site of another model, replaced whole by the shipped model's.
    std::fs::remove_dir_all(&out).unwrap();
    let other = conditional_model(tmp.path());
    let (code, _, err) = export_web(&other, &out, &["--data-dir", data]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(
        out.join("api/test/100"),
        "a file the new site does not have",
    )
    .unwrap();
    let (code, _, err) = export_web(&shipped_model(), &out, &["--overwrite", "--data-dir", data]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.join("api/test/100").exists(), "the old files are gone");
    assert_is_the_shipped_site(&out);
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn two_exports_into_one_new_folder_at_once_leave_one_whole_site_and_one_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let other = conditional_model(&tmp.path().join("cvae"));
    let data = data_dir().to_str().unwrap().to_string();
    for round in 0..3 {
        let out = tmp.path().join(format!("site-{round}"));
        let models = [shipped_model(), other.clone()];
        let runs: Vec<_> = models
            .iter()
            .map(|m| {
                let (m, out, data) = (m.clone(), out.clone(), data.clone());
                std::thread::spawn(move || export_web(&m, &out, &["--data-dir", &data]))
            })
            .collect();
        let codes: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        let won: Vec<usize> = (0..2).filter(|&i| codes[i].0 == Some(0)).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one export wins: {codes:?}"
        );
        let lost = &codes[1 - won[0]];
        assert!(
            one_line(&lost.2).contains(out.to_str().unwrap()),
            "{lost:?}"
        );
        let model = std::fs::read(out.join("model.safetensors")).unwrap();
        assert_eq!(
            model,
            std::fs::read(&models[won[0]]).unwrap(),
            "the winner's site, whole"
        );
        assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
    }
}

#[test]
fn without_its_test_set_a_site_is_refused_unless_asked_for_and_a_symlink_keeps_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    let empty = tmp.path().join("no-data");
    std::fs::create_dir(&empty).unwrap();
    let no_data = ["--data-dir", empty.to_str().unwrap()];
    let (code, stdout, err) = export_web(&shipped_model(), &out, &no_data);
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert_eq!(stdout, "");
    assert!(one_line(&err).contains("--no-test-set"), "{err}");
    assert!(!out.exists());
    let (code, _, err) = export_web(
        &shipped_model(),
        &out,
        &[&no_data[..], &["--no-test-set"]].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    let info: Value =
        serde_json::from_slice(&std::fs::read(out.join("api/model")).unwrap()).unwrap();
    assert_eq!(info["test_images"], json!(0));

    let target = tmp.path().join("www");
    std::fs::create_dir(&target).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let data = data_dir().to_str().unwrap();
    let (code, _, err) = export_web(&shipped_model(), &link, &["--data-dir", data]);
    assert_eq!(code, Some(0), "{err}");
    assert!(link.is_symlink(), "the link is kept");
    assert_is_the_shipped_site(&target);
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_model_file_that_does_not_load_fails_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("garbage.safetensors");
    std::fs::write(
        &model,
        b"\x13\x00\x00\x00\x00\x00\x00\x00not a model at all",
    )
    .unwrap();
    let out = tmp.path().join("site");
    let (code, stdout, err) =
        export_web(&model, &out, &["--data-dir", data_dir().to_str().unwrap()]);
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert_eq!(stdout, "");
    let line = one_line(&err);
    assert!(line.contains(model.to_str().unwrap()), "{line}");
    assert!(!out.exists(), "no --out folder");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_folder_whose_parent_is_a_file_fails_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("afile");
    std::fs::write(&file, "a file, not a folder").unwrap();
    let out = file.join("site");
    let (code, stdout, err) = export_web(
        &shipped_model(),
        &out,
        &["--data-dir", data_dir().to_str().unwrap()],
    );
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert_eq!(stdout, "");
    let line = one_line(&err);
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), b"a file, not a folder");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn missing_parents_are_made_and_a_model_inside_out_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir().to_str().unwrap().to_string();
    let nested = tmp.path().join("a/b/site");
    let (code, _, err) = export_web(&shipped_model(), &nested, &["--data-dir", &data]);
    assert_eq!(code, Some(0), "{err}");
    assert!(nested.join("index.html").is_file());
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let model = run.join("model.safetensors");
    std::fs::copy(shipped_model(), &model).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "").unwrap();
    // A site folder the model was copied into: --overwrite would take it, but not with the model inside.
    let site_json = r#"{"backend": "wasm", "model": "model.safetensors"}"#;
    std::fs::write(run.join("site.json"), site_json).unwrap();
    let (code, stdout, err) = export_web(&model, &run, &["--overwrite", "--data-dir", &data]);
    assert!(code.is_some() && code != Some(0), "{code:?}: {err}");
    assert_eq!(stdout, "");
    assert!(one_line(&err).contains("inside --out"), "{err}");
    assert!(
        run.join("metrics.jsonl").is_file() && model.is_file(),
        "the run folder is kept"
    );
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

// --- a plain static file server ---------------------------------------------------------------------------------

/// One request the file server answered: method, path (without a query), status.
type Seen = (String, String, u16);
type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

/// A folder served as a plain web host serves files, on a free port of 127.0.0.1: each GET of a file answered with
/// the content type of its extension (none known: `application/octet-stream`, as for `api/model`), anything else
/// 404. Records every request; stopped when dropped.
struct Site {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    url: String,
}

impl Site {
    fn start(root: &Path) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (srv, log, root) = (server.clone(), seen.clone(), root.to_path_buf());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                // Recorded before it is answered: whoever sees the answer finds the request in the log.
                let (seen, res) = answer(&root, &req);
                log.lock().unwrap().push(seen);
                let _ = req.respond(res);
            }
        });
        Self {
            server,
            thread: Some(thread),
            seen,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The requests answered so far.
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to `req` from the folder `root`, and the request as [`Site::requests`] records it.
fn answer(root: &Path, req: &tiny_http::Request) -> (Seen, Response) {
    let method = req.method().to_string();
    let path = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    let file = file_of(root, &path).filter(|_| method == "GET");
    let (status, res) = match file.and_then(|f| std::fs::read(&f).ok().map(|b| (f, b))) {
        Some((f, bytes)) => {
            let header = tiny_http::Header::from_bytes("Content-Type", content_type(&f)).unwrap();
            (200, Response::from_data(bytes).with_header(header))
        }
        None => (
            404,
            Response::from_string("not found").with_status_code(404),
        ),
    };
    ((method, path, status), res)
}

/// The file of `root` that a request path names (`/` is `index.html`); `None` for one outside the folder.
fn file_of(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.strip_prefix('/')?;
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let plain =
        |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains(['%', '\\']);
    let file = root.join(rel);
    (rel.split('/').all(plain) && file.is_file()).then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[test]
fn the_file_server_answers_files_with_their_types_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("api")).unwrap();
    for name in ["index.html", "a.wasm", "a.js", "api/model"] {
        std::fs::write(tmp.path().join(name), name).unwrap();
    }
    let site = Site::start(tmp.path());
    let get = |path: &str| match ureq::get(&format!("{}{path}", site.url)).call() {
        Ok(r) => (
            r.status(),
            r.content_type().to_string(),
            r.into_string().unwrap(),
        ),
        Err(ureq::Error::Status(code, _)) => (code, String::new(), String::new()),
        Err(e) => panic!("GET {path}: {e}"),
    };
    assert_eq!(get("/"), (200, "text/html".into(), "index.html".into()));
    assert_eq!(get("/a.wasm").1, "application/wasm");
    assert_eq!(get("/a.js").1, "text/javascript");
    assert_eq!(get("/api/model?x=1").2, "api/model");
    for missing in ["/nothing", "/api"] {
        assert_eq!(get(missing).0, 404, "{missing}");
    }
    let seen = site.requests();
    assert_eq!(seen.len(), 6, "{seen:?}");
    for outside in ["/../a.js", "/api/../a.js", "/%2e%2e/a.js", "//etc/passwd"] {
        assert_eq!(file_of(tmp.path(), outside), None, "{outside}");
    }
    assert_eq!(seen[3], ("GET".into(), "/api/model".into(), 200));
}

// --- the site in a browser ----------------------------------------------------------------------------------------

/// Checks what the page fetched from `site`: every request a GET of a file of the folder (not one 404), `wanted`
/// among them, every resource the page loaded from the site's origin (it is the only one), and no warning or error
/// in the browser's log.
async fn assert_served(client: &Client, driver: &Driver, site: &Site, wanted: &[&str]) {
    let requests = site.requests();
    for (method, path, status) in &requests {
        assert_eq!(
            (method.as_str(), *status),
            ("GET", 200),
            "{path}: {requests:?}"
        );
    }
    let paths: BTreeSet<&str> = requests.iter().map(|(_, p, _)| p.as_str()).collect();
    for path in wanted {
        assert!(paths.contains(path), "{path} was not fetched: {paths:?}");
    }
    let origin = js(client, "return location.origin;").await;
    assert_eq!(origin, json!(site.url));
    let names = js(
        client,
        "return performance.getEntriesByType('resource').map((e) => e.name);",
    )
    .await;
    let names = names.as_array().unwrap();
    assert!(!names.is_empty());
    let (own, blob) = (format!("{}/", site.url), format!("blob:{}/", site.url));
    for name in names.iter().map(|n| n.as_str().unwrap()) {
        assert!(
            name.starts_with(&own) || name.starts_with(&blob),
            "{name} is not of {own}"
        );
    }
    assert_eq!(
        browser_problems(client, driver).await,
        Vec::<Value>::new(),
        "the browser's log"
    );
}

/// What the page of the shipped model fetches as it starts.
const START: [&str; 10] = [
    "/",
    "/explorer.css",
    "/explorer.js",
    "/site.json",
    "/vae_web.js",
    "/vae_web_bg.wasm",
    "/model.safetensors",
    "/api/model",
    "/api/test/18",
    "/api/test/61",
];

/// Slider 0 moved: the decoded canvas is drawn again, and differently.
async fn a_slider_moves_the_decoded_image(client: &Client) {
    let before = pixels(client, "decoded").await;
    let v = version(client, "decoded").await;
    move_slider(client, 0, 2.5).await;
    drawn_after(client, "decoded", v).await;
    assert_eq!(
        version(client, "decoded").await,
        v + 1,
        "one decode for one move"
    );
    let off = changed(&before, &pixels(client, "decoded").await);
    assert!(off > 5.0, "the decoded image hardly changed: {off}");
}

/// A vertical stroke on the pad: the reconstruction is drawn, brightest down the middle, and "more like this" shows.
async fn a_stroke_is_reconstructed(client: &Client) {
    assert_eq!(version(client, "recon").await, 0);
    draw_vertical_stroke(client).await;
    drawn_after(client, "recon", 0).await;
    let (left, middle, right) = recon_columns(client).await;
    eprintln!("reconstruction of a vertical stroke, mean grey: left {left:.1}, middle {middle:.1}, right {right:.1}");
    assert!(
        middle > 2.0 * left.max(right) && middle > 30.0,
        "{left} {middle} {right}"
    );
    let more = "const i = document.getElementById('more'); \
        return !i.hidden && i.complete && i.naturalWidth > 4 * i.naturalHeight && i.naturalHeight > 0;";
    until(client, more, "a row of images like the drawing").await;
}

/// The page as it is now into `docs/web-explorer.png`, 1100 pixels wide.
async fn screenshot(client: &Client) {
    let png = client.screenshot().await.unwrap();
    let width = image::load_from_memory(&png).unwrap().width();
    assert_eq!(width, 1100, "the window is 1100 wide");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/web-explorer.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn the_static_site_loads_decodes_and_draws_from_a_plain_file_server() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    export(&shipped_model(), &out);
    let site = Site::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver).await;
        open(&client, &format!("{}/", site.url)).await;
        assert_served(&client, &driver, &site, &START).await;
        a_slider_moves_the_decoded_image(&client).await;
        a_stroke_is_reconstructed(&client).await;
        screenshot(&client).await;
        assert_eq!(errors(&client).await, json!([]), "errors after drawing");
        assert_served(&client, &driver, &site, &START).await;
        client.close().await.unwrap();
    });
    drop(site);
}

#[test]
fn a_conditional_models_class_and_a_2d_models_plane_work_on_their_sites() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cvae = tmp.path().join("cvae");
    export(&conditional_model(&cvae), &tmp.path().join("cvae-site"));
    let (code, _, err) = common::quick_train(&tmp.path().join("2d"), 2, 1000, &[]);
    assert_eq!(code, Some(0), "{err}");
    export(
        &tmp.path().join("2d/model.safetensors"),
        &tmp.path().join("2d-site"),
    );
    let (cvae, flat) = (
        Site::start(&tmp.path().join("cvae-site")),
        Site::start(&tmp.path().join("2d-site")),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver).await;
        open(&client, &format!("{}/", cvae.url)).await;
        let curves = "const i = document.getElementById('curves'); return !i.hidden && i.complete && i.naturalWidth > 0;";
        until(&client, curves, "the run's loss curves").await;
        let before = pixels(&client, "decoded").await;
        let v = version(&client, "decoded").await;
        pick_class(&client, 7).await;
        drawn_after(&client, "decoded", v).await;
        let off = changed(&before, &pixels(&client, "decoded").await);
        assert!(off > 5.0, "the class hardly changed the image: {off}");
        assert_eq!(errors(&client).await, json!([]));
        assert_served(&client, &driver, &cvae, &["/model.safetensors", "/api/curves.png"]).await;

        open(&client, &format!("{}/", flat.url)).await;
        let plane = "const i = document.getElementById('plane'); return !i.hidden && i.complete && i.naturalWidth > 0;";
        until(&client, plane, "the latent plane").await;
        let legend = js(&client, "return document.querySelectorAll('#plane-legend span').length;").await;
        assert_eq!(legend, json!(10), "a legend entry per class");
        assert_served(&client, &driver, &flat, &["/api/plane", "/api/plane.png", "/api/curves.png"]).await;
        client.close().await.unwrap();
    });
}

// --- the same numbers as the command line -------------------------------------------------------------------------

/// The f32 values of a `.npy` file.
fn npy_values(path: &Path) -> Vec<f32> {
    let t = candle_core::Tensor::read_npy(path).unwrap();
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Checks that `got` (from the page) is `want` (from `vae-train`) within `tol` everywhere.
fn assert_close(got: &Value, want: &[f32], tol: f64, what: &str) {
    let got: Vec<f64> = serde_json::from_value(got.clone()).unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    let off = got.iter().zip(want).map(|(a, &b)| (a - f64::from(b)).abs());
    let (i, worst) = off
        .enumerate()
        .fold((0, 0.0), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    eprintln!("{what}: the page and vae-train differ by at most {worst:.2e} (value {i})");
    assert!(
        worst <= tol,
        "{what}: value {i} is {} on the page, {} from vae-train",
        got[i],
        want[i]
    );
}

/// `vae-train` with `args`, which must succeed.
fn run_ok(args: &[&str]) {
    let (code, _, err) = common::vae_train(args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
}

/// MNIST test image `index` of the site in `out`, scaled up ×4 to 112 × 112 grey levels: written as a PNG to
/// `file`, and returned as the pad's values (each level / 255).
fn digit_picture(out: &Path, index: usize, file: &Path) -> Vec<f64> {
    let test: Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("api/test/{index}"))).unwrap())
            .unwrap();
    let px: Vec<f64> = serde_json::from_value(test["pixels"].clone()).unwrap();
    assert_eq!(px.len(), 784);
    let level = |x: u32, y: u32| (px[(y / 4 * 28 + x / 4) as usize] * 255.0).round() as u8;
    let img = image::GrayImage::from_fn(112, 112, |x, y| image::Luma([level(x, y)]));
    img.save(file).unwrap();
    img.pixels().map(|p| f64::from(p[0]) / 255.0).collect()
}

/// What the page's model answers, run in the page: `decodeValues` of z = 0, and `/api/encode` of `drawing`.
async fn page_numbers(client: &Client, drawing: Value) -> (Value, Value) {
    let zero =
        "return Array.from(window.__explorer.decodeValues(new Float64Array(20), undefined));";
    let encode =
        "const bytes = window.__explorer.call('/api/encode', JSON.stringify(arguments[0])); \
        return JSON.parse(new TextDecoder().decode(bytes));";
    let decoded = js(client, zero).await;
    let encoded = client.execute(encode, vec![drawing]).await.unwrap();
    (decoded, encoded)
}

/// The milliseconds of one `decodeValues` and one `/api/decode` (a PNG) in the page, each the mean of 50.
async fn decode_times(client: &Client) -> Value {
    let script = "const e = window.__explorer; const z = new Float64Array(20).fill(0.5); \
        let t = performance.now(); for (let i = 0; i < 50; i++) e.decodeValues(z, undefined); \
        const values = (performance.now() - t) / 50; const body = JSON.stringify({ z: Array.from(z) }); \
        t = performance.now(); for (let i = 0; i < 50; i++) e.call('/api/decode', body); \
        return [values, (performance.now() - t) / 50];";
    js(client, script).await
}

/// What `vae-train` makes of the shipped model and a picture, for the page to match.
struct Cli {
    /// `sample --temperature 0`: z = 0 decoded.
    sampled: Vec<f32>,
    /// The picture's grey levels, as the pad's values.
    pad: Vec<f64>,
    /// The picture made into the model's input, as `generate --like` makes it.
    input: Vec<f32>,
    /// `generate --like` the picture `--temperature 0`: its posterior mean decoded.
    generated: Vec<f32>,
}

/// [`Cli`] of `model`, with MNIST test image 3 of the site in `out` as the picture; files into `dir`.
fn cli_numbers(model: &Path, out: &Path, dir: &Path) -> Cli {
    let m = model.to_str().unwrap();
    let (sampled, picture, generated) =
        (dir.join("s.npy"), dir.join("digit.png"), dir.join("g.npy"));
    let zero = ["sample", "--model", m, "--n", "1", "--temperature", "0"];
    run_ok(&[&zero[..], &["--out", sampled.to_str().unwrap()]].concat());
    let pad = digit_picture(out, 3, &picture);
    let like = [
        "generate",
        "--model",
        m,
        "--like",
        picture.to_str().unwrap(),
    ];
    let rest = [
        "--n",
        "1",
        "--temperature",
        "0",
        "--data-dir",
        data_dir().to_str().unwrap(),
    ];
    run_ok(&[&like[..], &rest, &["--out", generated.to_str().unwrap()]].concat());
    let vae = vae_model::Vae::load(model, &candle_core::Device::Cpu).unwrap();
    Cli {
        sampled: npy_values(&sampled),
        pad,
        input: vae_train::inputs::picture_values(&picture, vae.config()).unwrap(),
        generated: npy_values(&generated),
    }
}

#[test]
fn the_sites_model_decodes_as_sample_and_reads_a_picture_as_generate_like_does() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    export(&shipped_model(), &out);
    let cli = cli_numbers(&shipped_model(), &out, tmp.path());
    let site = Site::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver).await;
        open(&client, &format!("{}/", site.url)).await;
        let drawing = json!({"width": 112, "height": 112, "pixels": cli.pad});
        let (decoded, encoded) = page_numbers(&client, drawing).await;
        assert_close(&decoded, &cli.sampled, 1e-5, "z = 0 decoded");
        assert_close(&encoded["input"], &cli.input, 1e-5, "the picture as input");
        let recon = "its posterior mean decoded";
        assert_close(&encoded["recon"], &cli.generated, 1e-5, recon);
        let mu: Vec<f64> = serde_json::from_value(encoded["mu"].clone()).unwrap();
        assert!(mu.iter().any(|v| v.abs() > 0.1), "a z away from 0: {mu:?}");
        let times = decode_times(&client).await;
        eprintln!("decode in the page, ms (values, PNG): {times}");
        assert_served(&client, &driver, &site, &START).await;
        client.close().await.unwrap();
    });
}

#[test]
fn a_site_whose_model_does_not_load_shows_the_error_on_the_page() {
    let Some(driver) = driver_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("site");
    export(&shipped_model(), &out);
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    std::fs::write(out.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let site = Site::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver).await;
        client.goto(&format!("{}/", site.url)).await.unwrap();
        until(&client, "return window.__errors.length > 0;", "the page to report the error").await;
        // Give a page that (wrongly) went on the time to say it is ready.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let state = "const s = document.getElementById('status'); \
            return [s.textContent, s.offsetParent !== null, document.body.dataset.ready || null, window.__errors];";
        let state = js(&client, state).await;
        eprintln!("a truncated model on the page: {state}");
        let status = state[0].as_str().unwrap();
        assert!(status.contains("model.safetensors"), "{state}");
        assert_eq!(state[1], json!(true), "#status is shown");
        assert_ne!(state[2], json!("true"), "the page does not say it is ready");
        assert_eq!(state[3], json!([status]), "the one error is the one shown");
        client.close().await.unwrap();
    });
}
