//! The README's `vae-train` commands, run as written: every line of its `sh` blocks and every inline code span that
//! starts with `vae-train `, in README order, in a folder that holds what they expect (the datasets, a small
//! conditional model, the teaching code's PyTorch file), so that a command that fails as written fails the test.
//!
//! Two placeholders stand for what only a user has: the mirror `http://127.0.0.1:8000/` (run against
//! `$VAE_DATA_MIRROR`, skipped without it) and the folder `/media/usb/datasets` (the data directory). `serve` is
//! started on a free port of 127.0.0.1 (`--bind` appended), asked for `/api/model`, and stopped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{project_root, target_dir};

/// The longest one command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

/// The placeholders of a user's own places, each with what stands in for it here (`None`: skip the command).
fn placeholders(data: &Path) -> Vec<(&'static str, Option<String>)> {
    let mirror = std::env::var("VAE_DATA_MIRROR")
        .ok()
        .filter(|m| !m.is_empty());
    vec![
        ("http://127.0.0.1:8000/", mirror),
        ("/media/usb/datasets", Some(data.display().to_string())),
    ]
}

/// The `vae-train` commands of `readme`, in order: the lines of its `sh` blocks (comments cut) and its inline code
/// spans, without those that name a placeholder of the reader's choosing (`<command>`, `[--flag]`, `a|b`, `…`).
pub fn commands(readme: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Prose since the last fence: its code spans may run across lines.
    let mut prose = String::new();
    let mut fence: Option<String> = None;
    for line in readme.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            found.extend(code_spans(&std::mem::take(&mut prose)));
            fence = match fence {
                Some(_) => None,
                None => Some(lang.trim().to_string()),
            };
            continue;
        }
        match &fence {
            Some(lang) if lang == "sh" => {
                let command = trimmed.split(" #").next().unwrap_or_default().trim();
                found.push(command.to_string());
            }
            Some(_) => {}
            // A heading names a command; it does not give one.
            None if trimmed.starts_with('#') => {}
            None => {
                prose.push_str(line);
                prose.push(' ');
            }
        }
    }
    found.extend(code_spans(&prose));
    let chosen = |c: &String| c.starts_with("vae-train ") && !c.contains(['<', '[', '|', '…']);
    found.into_iter().filter(chosen).collect()
}

/// The inline code spans of `prose`, each on one line.
fn code_spans(prose: &str) -> Vec<String> {
    let spans = prose.split('`').skip(1).step_by(2);
    spans
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Runs every command of the README in `work` (emptied first) with the binary at `bin`; returns how many ran and
/// the ones skipped, with why.
pub fn run_all(bin: &Path, work: &Path, data: &Path) -> Result<(usize, Vec<String>)> {
    let readme = std::fs::read_to_string(project_root().join("README.md"))?;
    let _ = std::fs::remove_dir_all(work);
    prepare(bin, work, data)?;
    let (mut ran, mut skipped) = (0, Vec::new());
    'commands: for line in commands(&readme) {
        let mut line = line;
        for (placeholder, stand_in) in placeholders(data) {
            match (&stand_in, line.contains(placeholder)) {
                (Some(s), true) => line = line.replace(placeholder, s),
                (None, true) => {
                    skipped.push(format!("{line} (no stand-in for {placeholder})"));
                    continue 'commands;
                }
                _ => {}
            }
        }
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        match args.first() {
            Some(&"serve") => {
                serve(bin, work, &args).with_context(|| format!("README: `{line}`"))?
            }
            _ => run_one(bin, work, &args).with_context(|| format!("README: `{line}`"))?,
        }
        ran += 1;
    }
    Ok((ran, skipped))
}

/// What the commands expect beside them: the datasets in `data/`, a conditional model in `runs/mnist-cvae/` (one
/// short epoch) and the teaching code's PyTorch file, `teaching.pt`.
fn prepare(bin: &Path, work: &Path, data: &Path) -> Result<()> {
    std::fs::create_dir_all(work)?;
    std::os::unix::fs::symlink(data, work.join("data"))?;
    let fixture = project_root().join("crates/vae-train/tests/fixtures/torch/teaching.pt");
    std::fs::copy(&fixture, work.join("teaching.pt"))
        .with_context(|| format!("{}: cannot copy", fixture.display()))?;
    let cvae = ["train", "--preset", "mnist-cvae", "--epochs", "1"];
    let small = ["--train-subset", "5000", "--out", "runs/mnist-cvae"];
    run_one(bin, work, &[&cvae[..], &small[..]].concat())
}

/// Runs `bin args` in `work`, failing with its last line of stderr unless it succeeds within [`COMMAND_LIMIT`].
fn run_one(bin: &Path, work: &Path, args: &[&str]) -> Result<()> {
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}: cannot start", bin.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            bail!("still running after {} s", COMMAND_LIMIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    if !status.success() {
        let last = stderr.trim().lines().last().unwrap_or("no output");
        bail!("exited with {status}: {last}");
    }
    eprintln!("e2e: README `vae-train {}` ... ok", args.join(" "));
    Ok(())
}

/// Starts `bin serve …` on a free port, waits for its `/api/model` to answer 200, and stops it.
fn serve(bin: &Path, work: &Path, args: &[&str]) -> Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bind = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(args)
        .args(["--bind", &bind])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut server = Stopped(child);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(status) = server.0.try_wait()? {
            bail!("exited with {status} before answering");
        }
        if get_model(&bind).is_ok_and(|answer| answer.starts_with("HTTP/1.1 200")) {
            eprintln!(
                "e2e: README `vae-train {}` ... ok (answered on {bind})",
                args.join(" ")
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no answer on {bind} within 60 s")
}

/// A server process, killed when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /api/model` on `addr`: the answer's text.
fn get_model(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /api/model HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The release binary the end-to-end run built.
pub fn release_binary() -> PathBuf {
    target_dir().join("release").join("vae-train")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_from_sh_blocks_and_inline_code_without_placeholders() {
        let readme = "Run `vae-train eval --model m` or `vae-train <command> --help`, `cargo xtask test`.\n\
                      ```sh\nvae-train sample --out s.png   # a grid\ncargo xtask train\n```\n\
                      ```text\nvae-train not a command\n```\n\
                      `vae-train completions bash|zsh` and `vae-train traverse [--dims 16]`; `vae-train`.\n\
                      A span `vae-train curves --run\nruns/mnist` across lines.\n\
                      ## A heading: `vae-train serve`\n";
        assert_eq!(
            commands(readme),
            [
                "vae-train eval --model m",
                "vae-train sample --out s.png",
                "vae-train curves --run runs/mnist"
            ]
        );
    }

    #[test]
    fn the_readme_has_commands_to_run() {
        let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
        let found = commands(&readme);
        for command in [
            "train",
            "eval",
            "sample",
            "generate",
            "interpolate",
            "traverse",
            "serve",
        ] {
            let prefix = format!("vae-train {command} ");
            assert!(
                found.iter().any(|c| c.starts_with(&prefix)),
                "no `{prefix}…` in {found:?}"
            );
        }
    }
}
