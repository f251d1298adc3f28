//! The explorer page in a real browser: headless Chromium through chromedriver (the Debian packages `.ci/run`
//! installs), driven with fantoccini. Shared by the tests of `serve` and of `export-web`'s static site.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// chromedriver on a free port, with Chromium, or the reason there is none.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn driver() -> Result<Driver, String> {
    for exe in ["chromium", "chromedriver"] {
        if Command::new(exe).arg("--version").output().is_err() {
            return Err(format!(
                "no `{exe}` on PATH (Debian: apt-get install chromium chromium-driver)"
            ));
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("chromedriver: {e}"))?;
    let driver = Driver {
        child,
        port,
        profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("chromedriver did not start in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(driver)
}

/// [`driver`], or `None` after saying why the browser test is skipped.
pub fn driver_or_skip() -> Option<Driver> {
    driver()
        .map_err(|reason| eprintln!("browser test skipped: {reason}"))
        .ok()
}

/// A headless Chromium session, 1100 × 1400, that does not try to reach the network (these machines have none) and
/// keeps the console's messages for [`browser_log`].
pub async fn browser(driver: &Driver) -> Client {
    let profile = driver.profile.path().to_str().unwrap().to_string();
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1100,1400",
        &format!("--user-data-dir={profile}"),
    ];
    let caps = json!({
        "goog:chromeOptions": { "args": args },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = caps.as_object().unwrap().clone();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// The browser's console and network messages since the last call (chromedriver's log endpoint, which empties it):
/// each `{level, message, source}`.
pub async fn browser_log(client: &Client, driver: &Driver) -> Vec<Value> {
    let id = client.session_id().await.unwrap().expect("a session");
    let url = format!("http://127.0.0.1:{}/session/{id}/se/log", driver.port);
    let res = ureq::post(&url)
        .set("content-type", "application/json")
        .send_string(r#"{"type": "browser"}"#)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let log: Value = serde_json::from_str(&res.into_string().unwrap()).unwrap();
    log["value"].as_array().cloned().unwrap_or_default()
}

/// The browser log's warnings and errors (Chromium's levels WARNING and SEVERE), less Chromium's hint that a canvas
/// read back often should be made with `willReadFrequently`: the tests' own [`pixels`] reads canvases repeatedly.
pub async fn browser_problems(client: &Client, driver: &Driver) -> Vec<Value> {
    let log = browser_log(client, driver).await;
    let hint = |e: &Value| {
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("willReadFrequently")
    };
    log.into_iter()
        .filter(|e| matches!(e["level"].as_str(), Some("WARNING" | "SEVERE")) && !hint(e))
        .collect()
}

pub async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Waits until `script` returns true.
pub async fn until(client: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while js(client, script).await != Value::Bool(true) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The grey levels of a canvas, row-major.
pub async fn pixels(client: &Client, id: &str) -> Vec<f64> {
    let script = format!(
        "const c = document.getElementById('{id}'); \
         return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).filter((_, i) => i % 4 == 0);"
    );
    js(client, &script)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// How much two canvases' grey levels differ: the sum of the differences, in whole pixels (255 levels each).
pub fn changed(before: &[f64], after: &[f64]) -> f64 {
    let off: f64 = before.iter().zip(after).map(|(a, b)| (a - b).abs()).sum();
    off / 255.0
}

pub async fn version(client: &Client, id: &str) -> u64 {
    let script = format!("return Number(document.getElementById('{id}').dataset.version || 0);");
    js(client, &script).await.as_u64().unwrap()
}

/// Waits until canvas `id` has been drawn again since it was at version `v`.
pub async fn drawn_after(client: &Client, id: &str, v: u64) {
    let script =
        format!("return Number(document.getElementById('{id}').dataset.version || 0) > {v};");
    until(client, &script, &format!("#{id} drawn again")).await;
}

pub async fn errors(client: &Client) -> Value {
    js(client, "return window.__errors;").await
}

/// Opens the page at `url`, waits for it to say it is ready, and checks it reported no error.
pub async fn open(client: &Client, url: &str) {
    client.goto(url).await.unwrap();
    until(
        client,
        "return document.body.dataset.ready === 'true';",
        "the page to start",
    )
    .await;
    assert_eq!(errors(client).await, json!([]), "console errors on load");
}

/// Moves slider `nth` (0: the most used dimension) to `value` as a user's drag would end.
pub async fn move_slider(client: &Client, nth: usize, value: f64) {
    let script = format!(
        "const s = document.querySelectorAll('.slider')[{nth}]; s.value = {value}; \
         s.dispatchEvent(new Event('input', {{ bubbles: true }})); return true;"
    );
    js(client, &script).await;
}

/// Picks class `class` in the class selector of a conditional model's page.
pub async fn pick_class(client: &Client, class: usize) {
    let script = format!(
        "const s = document.getElementById('label'); s.value = '{class}'; \
         s.dispatchEvent(new Event('change')); return true;"
    );
    js(client, &script).await;
}

/// A vertical stroke down the middle of the drawing pad, with the mouse, as a user draws a 1.
pub async fn draw_vertical_stroke(client: &Client) {
    let pad = client.find(Locator::Id("pad")).await.unwrap();
    let to = |y: i64, ms: Option<u64>| PointerAction::MoveToElement {
        element: pad.clone(),
        duration: ms.map(Duration::from_millis),
        x: 0,
        y,
    };
    let stroke = MouseActions::new("mouse".into())
        .then(to(-100, None))
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(to(0, Some(300)))
        .then(to(100, Some(300)))
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(stroke).await.unwrap();
}

/// The mean grey level (0-255) of the left third, the middle and the right third of the 112 × 112 `#recon`.
pub async fn recon_columns(client: &Client) -> (f64, f64, f64) {
    let recon = pixels(client, "recon").await;
    assert_eq!(recon.len(), 112 * 112, "#recon is 112 × 112");
    let column = |x0: usize, x1: usize| -> f64 {
        let cells = (0..112).flat_map(|y| (x0..x1).map(move |x| (y, x)));
        cells.map(|(y, x)| recon[y * 112 + x]).sum::<f64>() / ((x1 - x0) * 112) as f64
    };
    (column(0, 36), column(40, 72), column(76, 112))
}
