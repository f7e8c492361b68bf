//! The web page, driven in headless Chromium through chromedriver (W3C WebDriver over plain
//! HTTP/1.1): a key, the bundled portrait and recording, 2 steps, submit; the finished video
//! must play inline, with a share link. A screenshot is left in `target/sonic-web-page.png`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Stack, StackOptions};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and (once made) its session; dropping it ends the session (closing
/// the browser) and kills chromedriver, on success and on panic alike.
struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
    profile: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and a headless Chromium session.
    fn start() -> Self {
        let port = support::free_port();
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("chromedriver");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver ({binary}) does not start: {e}"));
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = support::http_get(&driver.base, "/status", &[])
                && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,1000",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.push(format!(
            "--user-data-dir={}",
            driver.profile.path().display()
        ));
        let mut options = json!({ "args": args });
        if let Some(chromium) = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        {
            options["binary"] = json!(chromium);
        }
        let created = driver.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}}),
        );
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        driver.session = Some(id);
        driver
    }

    /// A WebDriver command; returns its `value`, panics on an error answer.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let (status, text) = support::http_request(
            method,
            &self.base,
            path,
            &[("Content-Type", "application/json; charset=utf-8")],
            &body,
        )
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {status} {e}: {text}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {value}");
        value["value"].clone()
    }

    /// A command on the session: `/session/{id}{path}`.
    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        let id = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    fn navigate(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url }));
    }

    /// The element matching `css`.
    fn find(&self, css: &str) -> String {
        let found = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}: {found}"))
            .to_owned()
    }

    /// Types `text` into `css` (for a file input: the file's absolute path).
    fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.session("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn execute(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// The page as a PNG.
    fn screenshot(&self) -> Vec<u8> {
        let value = self.session("GET", "/screenshot", Value::Null);
        base64_decode(value.as_str().expect("base64 screenshot"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ =
                support::http_request("DELETE", &self.base, &format!("/session/{id}"), &[], b"");
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Standard base64 (what WebDriver screenshots are).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// What the test watches on the page.
const PAGE_STATE: &str = r#"
const v = document.querySelector('#result');
return {
  currentTime: v ? v.currentTime : -1, paused: v ? v.paused : true, ended: v ? v.ended : false,
  readyState: v ? v.readyState : -1, src: v ? v.currentSrc : '', mediaError: v && v.error ? v.error.code : null,
  status: document.querySelector('#status').textContent,
  error: document.querySelector('#error').textContent,
  link: document.querySelector('#share-link').textContent,
};"#;

#[test]
#[ignore = "needs nats-server and chromium with chromedriver: apt-get install nats-server chromium chromium-driver"]
fn the_page_renders_a_video_that_plays_inline() {
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default());
    let driver = Driver::start();
    driver.navigate(&stack.url("/"));
    let title = driver.execute("return document.title;");
    assert!(
        title.as_str().is_some_and(|t| t.contains("Sonic")),
        "the page: {title}"
    );

    driver.send_keys("#api-key", stack.key("acme"));
    let portrait = std::fs::canonicalize(support::PORTRAIT).unwrap();
    let speech = std::fs::canonicalize(support::SPEECH).unwrap();
    driver.send_keys("#image-input", portrait.to_str().unwrap());
    driver.send_keys("#audio-input", speech.to_str().unwrap());
    driver.execute(
        "const s = document.querySelector('#steps'); s.value = '2';
         s.dispatchEvent(new Event('input', {bubbles: true}));
         s.dispatchEvent(new Event('change', {bubbles: true}));",
    );
    let previews = driver.execute(
        "return [document.querySelector('#image-preview').naturalWidth > 0 || !!document.querySelector('#image-preview').src,
                 !!document.querySelector('#audio-preview').src,
                 document.querySelector('#steps').value];",
    );
    assert_eq!(previews, json!([true, true, "2"]), "previews and steps");
    driver.click("#submit");

    // Bounded: upload, queue, two denoising steps of the demo weights, encode, signed link.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen: Vec<String> = Vec::new();
    let state = loop {
        let state = driver.execute(PAGE_STATE);
        if let Some(status) = state["status"].as_str()
            && seen.last().map(String::as_str) != Some(status)
        {
            seen.push(status.to_owned());
        }
        let played = state["currentTime"].as_f64().unwrap_or(0.0) > 0.0
            && (state["paused"] == false || state["ended"] == true);
        if played {
            break state;
        }
        if Instant::now() > deadline {
            panic!(
                "the video did not play within 180 s: {state:#}\nthe page said: {seen:#?}\n{}",
                stack.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let link = state["link"].as_str().unwrap_or_default();
    assert!(link.starts_with("http"), "share link {link:?}: {state:#}");
    assert_eq!(state["error"], "", "no error shown: {state:#}");

    let png = driver.screenshot();
    let path = format!("{}sonic-web-page.png", support::TARGET_DIR);
    std::fs::write(&path, &png).unwrap();
    let path = std::fs::canonicalize(&path).unwrap();
    assert!(png.len() > 1000, "a screenshot of {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    eprintln!("the page said: {seen:#?}");
    eprintln!(
        "played at {:.2} s after {:.1} s; screenshot {}",
        state["currentTime"].as_f64().unwrap_or(0.0),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    drop(driver);
    drop(stack);
}
