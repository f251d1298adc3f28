//! `cargo xtask bench --web`: the explorer's WebAssembly module in headless Chromium. A model of the `mnist`
//! preset is exported with `vae-train export-web`, a bench page beside the site times 100 decodes of one image
//! (the page's `api/decode` call, and the decoder alone) and how long the explorer page takes to be interactive,
//! and posts the figures back to the small file server here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::project_root;

/// The bench page: loads the module and the model as the explorer does, then times.
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>decode bench</title>
<iframe id="page" width="1100" height="900"></iframe>
<script type="module">
import init, { WebExplorer } from "./vae_web.js";
const median = (v) => { v.sort((a, b) => a - b); return (v[49] + v[50]) / 2; };
async function run() {
  await init({ module_or_path: "vae_web_bg.wasm" });
  const bytes = new Uint8Array(await (await fetch("model.safetensors")).arrayBuffer());
  const explorer = new WebExplorer(bytes);
  const info = await (await fetch("api/model")).json();
  const d = info.config.latent_dim;
  const z = () => Array.from({ length: d }, () => Math.random() * 2 - 1);
  for (let i = 0; i < 10; i++) explorer.call("/api/decode", JSON.stringify({ z: z() }));
  const call = [], values = [];
  for (let i = 0; i < 100; i++) {
    const body = JSON.stringify({ z: z() });
    const t0 = performance.now();
    explorer.call("/api/decode", body);
    call.push(performance.now() - t0);
  }
  for (let i = 0; i < 100; i++) {
    const zi = new Float64Array(z());
    const t0 = performance.now();
    explorer.decodeValues(zi, undefined);
    values.push(performance.now() - t0);
  }
  const frame = document.getElementById("page");
  const t0 = performance.now();
  frame.src = "index.html";
  while (frame.contentDocument?.body?.dataset.ready !== "true") {
    if (performance.now() - t0 > 30000) throw new Error("the explorer page did not start in 30 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  return { decode_call_ms: median(call), decode_values_ms: median(values), interactive_ms: performance.now() - t0,
           errors: frame.contentWindow.__errors };
}
const post = (r) => fetch("result", { method: "POST", body: JSON.stringify(r) });
run().then(post, (e) => post({ error: String(e) }));
</script>"#;

/// Exports a model of `exe`'s `mnist` preset and times its decoding in Chromium; the figures as JSON.
pub fn run(exe: &Path, work: &Path) -> Result<serde_json::Value> {
    let model_dir = work.join("web-model");
    let site = work.join("web-site");
    let _ = std::fs::remove_dir_all(&model_dir);
    let train = [
        "train",
        "--preset",
        "mnist",
        "--epochs",
        "1",
        "--train-subset",
        "2000",
    ];
    run_ok(Command::new(exe).args(train).arg("--out").arg(&model_dir))?;
    let export = ["export-web", "--overwrite", "--model"];
    let mut cmd = Command::new(exe);
    cmd.args(export)
        .arg(model_dir.join("model.safetensors"))
        .arg("--out")
        .arg(&site);
    run_ok(&mut cmd)?;
    std::fs::write(site.join("bench.html"), PAGE)?;
    let result = serve_until_result(&site)?;
    if let Some(e) = result.get("error") {
        bail!("the bench page: {e}");
    }
    let wasm = std::fs::metadata(site.join("vae_web_bg.wasm"))?.len();
    println!(
        "\nThe explorer in WebAssembly (headless Chromium, the `mnist` model, medians of 100): decode call \
         {:.2} ms (decoder and PNG), decoder alone {:.2} ms; page interactive {:.0} ms after load; .wasm {:.2} MB",
        result["decode_call_ms"].as_f64().unwrap_or(f64::NAN),
        result["decode_values_ms"].as_f64().unwrap_or(f64::NAN),
        result["interactive_ms"].as_f64().unwrap_or(f64::NAN),
        wasm as f64 / 1e6
    );
    let mut result = result;
    result["wasm_bytes"] = wasm.into();
    Ok(result)
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.current_dir(project_root()).output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Serves `site` on 127.0.0.1, opens its bench page in headless Chromium and returns what the page posts.
fn serve_until_result(site: &Path) -> Result<serde_json::Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let profile = std::env::temp_dir().join(format!("vae-bench-chromium-{}", std::process::id()));
    let mut chromium = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{port}/bench.html"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("chromium (Debian's package) is needed for the web bench")?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(body) = answer(stream, site)? {
                    break serde_json::from_slice(&body).context("the bench page's answer");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    break Err(anyhow::anyhow!("the bench page posted nothing in 120 s"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => break Err(e.into()),
        }
    };
    let _ = chromium.kill();
    let _ = chromium.wait();
    let _ = std::fs::remove_dir_all(&profile);
    result
}

/// Answers one request: a file of `site`, or the posted result (returned).
fn answer(stream: TcpStream, site: &Path) -> Result<Option<Vec<u8>>> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let mut stream = stream;
    if line.starts_with("POST") && path == "/result" {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
        return Ok(Some(body));
    }
    let file = site.join(path.trim_start_matches('/'));
    let (status, body) = match std::fs::read(&file) {
        Ok(b) if !path.contains("..") => ("200 OK", b),
        _ => ("404 Not Found", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content_type(path),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    Ok(None)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
