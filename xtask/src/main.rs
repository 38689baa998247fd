//! Project tasks: `cargo xtask build | serve | test`.
//!
//! - `build`: release wasm of the library (feature `web`), bindings through the wasm-bindgen
//!   library pinned to Cargo.lock's wasm-bindgen, `wasm-opt -Oz` from npm `binaryen@132`, and a
//!   static `dist/` with relative URLs only (works from any static host and under a sub-path).
//! - `serve [--port N] [--no-build]`: build, then serve `dist/` on 127.0.0.1.
//! - `test`: THE test command. Installs what is missing, then runs every check and test and
//!   prints a summary; exits non-zero on any failure.
//! - `wasm-bindgen-test-runner <args>`: the test runner of the same pinned wasm-bindgen (used as
//!   `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER` by `test`).
//! - `wasm-bindgen <args>`: the pinned bindings generator.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

const APT_PACKAGES: &[&str] = &[
    "mesa-vulkan-drivers",
    "libvulkan1",
    "libegl1",
    "libegl-mesa0",
    "libgl1-mesa-dri",
    "chromium",
    "chromium-driver",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(2)..];
    let result = match cmd {
        "build" => build(&root()).map(|_| ()),
        "serve" => serve_cmd(rest),
        "test" => return test_cmd(rest),
        "e2e" => {
            let root = root();
            let tmp = env::temp_dir().join(format!("lora-one-lab-e2e-{}", std::process::id()));
            let _ = fs::create_dir_all(&tmp);
            let r = ensure_npm(&root).and_then(|_| run_e2e(&root, &tmp));
            let _ = fs::remove_dir_all(&tmp);
            r.map(|note| eprintln!("{note}"))
        }
        "wasm-bindgen-test-runner" => {
            let mut a: Vec<OsString> = vec!["wasm-bindgen-test-runner".into()];
            a.extend(rest.iter().map(OsString::from));
            wasm_bindgen_cli::wasm_bindgen_test_runner::run_cli_with_args(a)
                .map_err(|e| format!("{e:#}"))
        }
        "wasm-bindgen" => {
            let mut a: Vec<OsString> = vec!["wasm-bindgen".into()];
            a.extend(rest.iter().map(OsString::from));
            wasm_bindgen_cli::wasm_bindgen::run_cli_with_args(a).map_err(|e| format!("{e:#}"))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 build                      build the static site into dist/\n  \
                 serve [--port N] [--no-build]  build, then serve dist/ on 127.0.0.1\n  \
                 test                       install what is missing, run every check and test\n  \
                 e2e                        only the end-to-end browser tests of the built dist/\n  \
                 wasm-bindgen <args>        the pinned bindings generator\n  \
                 wasm-bindgen-test-runner <args>  the pinned wasm test runner"
            );
            return if cmd == "help" || cmd == "--help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's manifest directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Run a command, streaming its output; on failure the error names the command and quotes the
/// first lines of its stderr that look like the cause (for the summary).
fn run(cmd: &mut Command) -> Res<()> {
    use std::io::BufRead;
    use std::sync::Mutex;
    eprintln!("  $ {}", show(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    let causes: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let watch = |r: Box<dyn io::Read + Send>, to_stdout: bool| {
        let causes = causes.clone();
        thread::spawn(move || {
            let mut after_panic = false;
            for line in io::BufReader::new(r).lines().map_while(Result::ok) {
                if to_stdout {
                    println!("{line}");
                } else {
                    eprintln!("{line}");
                }
                let t = line.trim_start();
                // the panic message is on the line after "panicked at"
                let interesting = std::mem::take(&mut after_panic)
                    || t.starts_with("error")
                    || t.starts_with("--> ")
                    || t.starts_with("Diff in")
                    || t.starts_with("FAIL")
                    || t.starts_with("test result: FAILED")
                    || t.contains("panicked at");
                after_panic = t.contains("panicked at");
                let mut c = causes.lock().unwrap_or_else(|p| p.into_inner());
                if interesting && c.len() < 6 && !c.iter().any(|x| x == t) {
                    c.push(t.chars().take(400).collect());
                }
            }
        })
    };
    let mut threads = Vec::new();
    if let Some(o) = child.stdout.take() {
        threads.push(watch(Box::new(o), true));
    }
    if let Some(e) = child.stderr.take() {
        threads.push(watch(Box::new(e), false));
    }
    let st = child.wait().map_err(|e| format!("`{}`: {e}", show(cmd)))?;
    for t in threads {
        let _ = t.join();
    }
    if st.success() {
        Ok(())
    } else {
        let mut m = format!("`{}` failed ({st})", show(cmd));
        for c in causes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            m.push_str("\n        ");
            m.push_str(c);
        }
        Err(m)
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn have(program: &str) -> bool {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Tools installed on demand

/// npm packages (binaryen for wasm-opt, playwright-core for the e2e test) live in tests/e2e.
fn npm_dir(root: &Path) -> PathBuf {
    root.join("tests").join("e2e")
}

fn ensure_npm(root: &Path) -> Res<()> {
    let dir = npm_dir(root);
    // every package of tests/e2e/package.json (a checkout from before one was added has the
    // others but not it)
    let have_all = [
        "node_modules/.bin/wasm-opt",
        "node_modules/playwright-core/package.json",
        "node_modules/reveal.js/package.json",
        "node_modules/axe-core/package.json",
    ]
    .iter()
    .all(|f| dir.join(f).is_file());
    if have_all {
        return Ok(());
    }
    if !have("npm") {
        apt_install(&["nodejs", "npm"])?;
    }
    let lock = dir.join("package-lock.json").is_file();
    let mut c = Command::new("npm");
    c.current_dir(&dir)
        .arg(if lock { "ci" } else { "install" })
        .args(["--no-audit", "--no-fund"]);
    run(&mut c)
}

fn wasm_opt_path(root: &Path) -> Res<PathBuf> {
    ensure_npm(root)?;
    Ok(npm_dir(root).join("node_modules/.bin/wasm-opt"))
}

fn apt_install(pkgs: &[&str]) -> Res<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let prefix: Vec<&str> = if is_root { vec![] } else { vec!["sudo"] };
    let mk = |args: &[&str]| {
        let mut all: Vec<&str> = prefix.clone();
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut mk(&["apt-get", "update"]))?;
    let mut args = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    args.extend_from_slice(pkgs);
    run(&mut mk(&args))
}

fn lavapipe_present() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
}

/// `rustup target add wasm32-unknown-unknown` when the target is missing (a fresh machine).
fn ensure_wasm_target() -> Res<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if !installed {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

fn ensure_system(root: &Path) -> Res<()> {
    if !have("chromium") || !have("chromedriver") || !lavapipe_present() {
        eprintln!("  chromium, chromedriver or lavapipe missing: installing with apt-get");
        apt_install(APT_PACKAGES)?;
    }
    ensure_wasm_target()?;
    let comps = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for c in ["rustfmt", "clippy"] {
        if !comps.contains(c) {
            run(Command::new("rustup").args(["component", "add", c]))?;
        }
    }
    ensure_npm(root)
}

// ---------------------------------------------------------------------------------------------
// build

const WASM_NAME: &str = "lora_one_lab";
/// The web app's bundles: (name in dist/, cargo feature). Each is a page of its own (index.html
/// loads the one that shows the URL's view), and each first load is held to the budget.
const BUNDLES: [(&str, &str); 2] = [("app", "bundle-app"), ("studies", "bundle-studies")];
/// The first-load budget of each bundle, gzipped (`gzip -9`): the shell (html, css, icon) plus
/// the bundle's JS and wasm. `build` fails above it.
const DIST_BUDGET_GZ_BYTES: u64 = 500 * 1024;

/// Build the static site into dist/. Any dist/ of an earlier build is removed first, so a
/// failed build leaves no stale dist/ behind.
fn build(root: &Path) -> Res<PathBuf> {
    let t0 = Instant::now();
    let dist = root.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    ensure_wasm_target()?;
    fs::create_dir_all(&dist).map_err(|e| e.to_string())?;
    for (name, feature) in BUNDLES {
        build_bundle(root, &dist, name, feature)?;
    }

    // The shell: index.html, css, icons, the worker's loader.
    copy_tree(&root.join("www"), &dist, &|_| false)?;
    if !dist.join("index.html").is_file() {
        return Err("www/index.html is missing".into());
    }
    check_relative_urls(&dist)?;
    // the Digits view's data, fetched when that view opens (not part of any first load)
    fs::copy(root.join("assets/digits.bin"), dist.join("digits.bin"))
        .map_err(|e| format!("cannot copy assets/digits.bin: {e}"))?;

    let mut total = 0u64;
    let mut total_gz = 0u64;
    let mut lines = Vec::new();
    let mut sizes = Vec::new();
    for f in list_files(&dist)? {
        let len = fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let gz = gzip_len(&f).unwrap_or(len);
        total += len;
        total_gz += gz;
        let rel = f.strip_prefix(&dist).unwrap_or(&f).display().to_string();
        lines.push(format!("    {rel:<28} {len:>9} B {gz:>9} B gz"));
        sizes.push((rel, gz));
    }
    lines.sort();
    eprintln!("  dist/ built in {:.1} s:", t0.elapsed().as_secs_f64());
    for l in lines {
        eprintln!("{l}");
    }
    eprintln!(
        "    total {:.1} KB, {:.1} KB gzipped",
        total as f64 / 1024.0,
        total_gz as f64 / 1024.0,
    );
    let gz_of = |n: &str| sizes.iter().find(|(r, _)| r == n).map_or(0, |(_, g)| *g);
    let shell: u64 = ["index.html", "style.css", "favicon.svg"]
        .iter()
        .map(|n| gz_of(n))
        .sum();
    for (name, _) in BUNDLES {
        let first = shell + gz_of(&format!("{name}.js")) + gz_of(&format!("{name}_bg.wasm"));
        eprintln!(
            "    first load of `{name}`: {:.1} KB gzipped (budget {} KB gzipped)",
            first as f64 / 1024.0,
            DIST_BUDGET_GZ_BYTES / 1024
        );
        if first > DIST_BUDGET_GZ_BYTES {
            return Err(format!(
                "the first load of bundle `{name}` is {:.1} KB gzipped ({first} B), over the budget of {} KB gzipped ({} B)",
                first as f64 / 1024.0,
                DIST_BUDGET_GZ_BYTES / 1024,
                DIST_BUDGET_GZ_BYTES
            ));
        }
    }
    Ok(dist)
}

/// One bundle: the release wasm with `feature`, wasm-bindgen (as `<name>.js`), wasm-opt -Oz.
fn build_bundle(root: &Path, dist: &Path, name: &str, feature: &str) -> Res<()> {
    run(Command::new(cargo()).current_dir(root).args([
        "build",
        "--lib",
        "--no-default-features",
        "--features",
        &format!("web,{feature}"),
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "release-wasm",
    ]))?;
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let wasm = target_dir
        .join("wasm32-unknown-unknown/release-wasm")
        .join(format!("{WASM_NAME}.wasm"));
    let bg = target_dir.join(format!("xtask-bindgen-{name}"));
    let _ = fs::remove_dir_all(&bg);
    eprintln!("  wasm-bindgen (library, pinned) → {}", bg.display());
    let args: Vec<OsString> = vec![
        "wasm-bindgen".into(),
        "--target".into(),
        "web".into(),
        "--no-typescript".into(),
        "--out-name".into(),
        name.into(),
        "--out-dir".into(),
        bg.clone().into(),
        wasm.clone().into(),
    ];
    wasm_bindgen_cli::wasm_bindgen::run_cli_with_args(args)
        .map_err(|e| format!("wasm-bindgen: {e:#}"))?;

    // JS glue and any snippets, as they are.
    copy_tree(&bg, dist, &|p| p.extension().is_some_and(|e| e == "wasm"))?;
    let bg_wasm = bg.join(format!("{name}_bg.wasm"));
    let out_wasm = dist.join(format!("{name}_bg.wasm"));
    let wasm_opt = wasm_opt_path(root)?;
    run(Command::new(&wasm_opt)
        .arg("-Oz")
        .arg("--enable-bulk-memory")
        .arg("--enable-nontrapping-float-to-int")
        .arg("--enable-sign-ext")
        .arg("--enable-mutable-globals")
        .arg("--enable-reference-types")
        .arg("--enable-multivalue")
        .arg(&bg_wasm)
        .arg("-o")
        .arg(&out_wasm))
}

fn gzip_len(f: &Path) -> Option<u64> {
    let out = Command::new("gzip").arg("-9c").arg(f).output().ok()?;
    out.status.success().then_some(out.stdout.len() as u64)
}

fn list_files(dir: &Path) -> Res<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> Res<()> {
    for f in list_files(from)? {
        if skip(&f) {
            continue;
        }
        let rel = f.strip_prefix(from).map_err(|e| e.to_string())?;
        let dst = to.join(rel);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        fs::copy(&f, &dst).map_err(|e| format!("copy {}: {e}", f.display()))?;
    }
    Ok(())
}

/// dist/ must work under a sub-path: no root-relative or absolute URLs in the shell.
fn check_relative_urls(dist: &Path) -> Res<()> {
    for f in list_files(dist)? {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "html" | "css") {
            continue;
        }
        let text = fs::read_to_string(&f).map_err(|e| e.to_string())?;
        for pat in ["src=\"/", "href=\"/", "url(/", "url('/", "url(\"/"] {
            if text.contains(pat) {
                return Err(format!(
                    "{} contains a root-relative URL (`{pat}…`): use relative URLs",
                    f.display()
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// serve

fn serve_cmd(args: &[String]) -> Res<()> {
    let mut port: u16 = 8080;
    let mut do_build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" | "-p" => {
                port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            "--no-build" => do_build = false,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let root = root();
    let dist = if do_build {
        build(&root)?
    } else {
        root.join("dist")
    };
    let server = Server::start(&dist, port, "/")?;
    println!("Serving {} at {}", dist.display(), server.url);
    println!("Press Ctrl-C to stop.");
    io::stdout().flush().ok();
    loop {
        thread::park();
    }
}

/// A static file server for dist/ under a URL prefix (e.g. "/" or "/sub/path/").
struct Server {
    url: String,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(dir: &Path, port: u16, prefix: &str) -> Res<Server> {
        let srv = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let port = srv
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or("no port")?;
        let url = format!("http://127.0.0.1:{port}{prefix}");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let dir = dir.to_path_buf();
        let prefix = prefix.to_string();
        let handle = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match srv.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(req)) => respond(&dir, &prefix, req),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Server {
            url,
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn respond(dir: &Path, prefix: &str, req: tiny_http::Request) {
    let raw = req
        .url()
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .to_string();
    let not_found = |req: tiny_http::Request| {
        let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
    };
    // The prefix without its trailing slash redirects to the prefix.
    if prefix.len() > 1 && raw == prefix.trim_end_matches('/') {
        let h = tiny_http::Header::from_bytes("Location", prefix).expect("header");
        let _ = req.respond(
            tiny_http::Response::empty(301)
                .with_header(h)
                .with_status_code(301),
        );
        return;
    }
    let Some(rel) = raw.strip_prefix(prefix) else {
        return not_found(req);
    };
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    };
    if rel.split('/').any(|c| c == ".." || c.starts_with('.')) {
        return not_found(req);
    }
    let path = dir.join(&rel);
    let Ok(data) = fs::read(&path) else {
        return not_found(req);
    };
    let ct = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    };
    let h = tiny_http::Header::from_bytes("Content-Type", ct).expect("header");
    let nc = tiny_http::Header::from_bytes("Cache-Control", "no-cache").expect("header");
    let _ = req.respond(
        tiny_http::Response::from_data(data)
            .with_header(h)
            .with_header(nc),
    );
}

// ---------------------------------------------------------------------------------------------
// test

/// What one step of `cargo xtask test` does.
enum StepKind {
    /// apt packages, the rustup target and components, npm packages. Essential: when it fails,
    /// every later step is skipped.
    InstallTools,
    /// A plain `cargo <args>` on the host (no wasm test runner set).
    Cargo(&'static [&'static str]),
    /// `cargo <args> --test <t>…` for every wasm-bindgen-test file in tests/, run in headless
    /// Chromium through the pinned wasm-bindgen-test-runner.
    WasmBrowserTests(&'static [&'static str]),
    /// `build()`: dist/.
    BuildDist,
    /// The playwright-core tests of the dist/ built by the `BuildDist` step of the same run.
    E2e,
}

impl StepKind {
    /// Whether a failure skips every later step.
    fn essential(&self) -> bool {
        matches!(self, StepKind::InstallTools)
    }
}

struct TestStep {
    name: &'static str,
    kind: StepKind,
}

/// The steps of `cargo xtask test`, in the order they run.
const TEST_STEPS: &[TestStep] = &[
    TestStep {
        name: "install missing tools (apt, rustup target, npm)",
        kind: StepKind::InstallTools,
    },
    TestStep {
        name: "cargo fmt --all -- --check",
        kind: StepKind::Cargo(&["fmt", "--all", "--", "--check"]),
    },
    TestStep {
        name: "cargo clippy --workspace --all-targets -- -D warnings",
        kind: StepKind::Cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    },
    TestStep {
        name: "cargo test --workspace (native, GPU tests on lavapipe)",
        kind: StepKind::Cargo(&["test", "--workspace"]),
    },
    TestStep {
        name: "wasm build check: --no-default-features",
        kind: StepKind::Cargo(&[
            "build",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--no-default-features",
        ]),
    },
    TestStep {
        name: "wasm build check: --no-default-features --features web",
        kind: StepKind::Cargo(&[
            "build",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--no-default-features",
            "--features",
            "web",
        ]),
    },
    TestStep {
        name: "cargo clippy (wasm32, feature web: the web app) -- -D warnings",
        kind: StepKind::Cargo(&[
            "clippy",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--no-default-features",
            "--features",
            "web",
            "--",
            "-D",
            "warnings",
        ]),
    },
    TestStep {
        name: "wasm-bindgen-test in headless Chromium with WebGPU",
        kind: StepKind::WasmBrowserTests(&[
            "test",
            "--target",
            "wasm32-unknown-unknown",
            "--no-default-features",
            "--features",
            "web",
        ]),
    },
    TestStep {
        name: "build dist/ (release wasm, wasm-bindgen, wasm-opt -Oz)",
        kind: StepKind::BuildDist,
    },
    TestStep {
        name: "end-to-end browser tests of dist/ (playwright-core, headless Chromium)",
        kind: StepKind::E2e,
    },
];

/// What the steps of one `cargo xtask test` run share.
struct TestRun {
    root: PathBuf,
    /// Scratch directory of this run (removed at the end).
    tmp: PathBuf,
    /// XDG_RUNTIME_DIR for the native steps (mode 0700, inside `tmp`).
    xdg: PathBuf,
    /// This xtask binary, the wasm test runner.
    self_exe: PathBuf,
    /// Set when the `BuildDist` step of this run succeeded: `E2e` refuses to run otherwise.
    dist_built: bool,
}

impl TestRun {
    /// `cargo <args>` in the workspace root, on the host.
    fn native_cargo(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cargo());
        c.current_dir(&self.root)
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env_remove("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER");
        c
    }

    /// Run one step; `Ok` carries the note for the summary.
    fn run_step(&mut self, kind: &StepKind) -> Res<String> {
        match kind {
            StepKind::InstallTools => ensure_system(&self.root).map(|_| String::new()),
            StepKind::Cargo(args) => run(&mut self.native_cargo(args)).map(|_| String::new()),
            StepKind::WasmBrowserTests(args) => {
                let tests = web_test_targets(&self.root);
                if tests.is_empty() {
                    return Err("no tests/web_*.rs found".into());
                }
                let mut c = self.native_cargo(args);
                for t in &tests {
                    c.args(["--test", t]);
                }
                c.env(
                    "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                    format!("{} wasm-bindgen-test-runner", self.self_exe.display()),
                )
                .env(
                    "CHROMEDRIVER",
                    which("chromedriver").unwrap_or("chromedriver".into()),
                )
                .env("WASM_BINDGEN_TEST_TIMEOUT", "180");
                run(&mut c).map(|_| tests.join(", "))
            }
            StepKind::BuildDist => {
                let dist = build(&self.root)?;
                self.dist_built = true;
                Ok(dist.display().to_string())
            }
            StepKind::E2e => {
                if !self.dist_built {
                    return Err("dist/ was not built by this run (the build step failed)".into());
                }
                run_e2e(&self.root, &self.tmp)
            }
        }
    }
}

struct StepResult {
    name: &'static str,
    ok: Option<bool>, // None = skipped
    secs: f64,
    note: String,
}

fn test_cmd(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        eprintln!("xtask test: unknown option `{a}`");
        return ExitCode::from(2);
    }
    let root = root();
    let tmp = env::temp_dir().join(format!("lora-one-lab-xtask-{}", std::process::id()));
    let _ = fs::create_dir_all(&tmp);
    let xdg = tmp.join("xdg");
    let _ = fs::create_dir_all(&xdg);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700));
    }
    let self_exe = env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    let mut test_run = TestRun {
        root,
        tmp,
        xdg,
        self_exe,
        dist_built: false,
    };

    let mut results: Vec<StepResult> = Vec::new();
    let total = Instant::now();
    let mut abort = false;
    for step in TEST_STEPS {
        let name = step.name;
        // Every step runs (for a full summary), unless installing the tools failed.
        if abort {
            results.push(StepResult {
                name,
                ok: None,
                secs: 0.0,
                note: "skipped".into(),
            });
            continue;
        }
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let r = test_run.run_step(&step.kind);
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(note) => results.push(StepResult {
                name,
                ok: Some(true),
                secs,
                note,
            }),
            Err(e) => {
                eprintln!("!!! {name}: {e}");
                if step.kind.essential() {
                    abort = true;
                }
                results.push(StepResult {
                    name,
                    ok: Some(false),
                    secs,
                    note: e,
                });
            }
        }
    }
    let _ = fs::remove_dir_all(&test_run.tmp);

    eprintln!("\n================ cargo xtask test: summary ================");
    for r in &results {
        let tag = match r.ok {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "SKIP",
        };
        let note = if r.note.is_empty() {
            String::new()
        } else if r.ok == Some(false) {
            format!("\n        {}", r.note)
        } else {
            format!("  ({})", r.note.lines().next().unwrap_or(""))
        };
        eprintln!("  {tag}  {:>6.1} s  {}{note}", r.secs, r.name);
    }
    let n_fail = results.iter().filter(|r| r.ok == Some(false)).count();
    eprintln!(
        "  total {:.0} s: {}",
        total.elapsed().as_secs_f64(),
        if n_fail == 0 {
            "ALL PASSED".to_string()
        } else {
            format!("{n_fail} FAILED")
        }
    );
    if n_fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn which(p: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}

fn web_test_targets(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("tests"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    // tests/web_*.rs, and any other test file written for wasm-bindgen-test
                    let wasm = n.ends_with(".rs")
                        && (n.starts_with("web_")
                            || fs::read_to_string(e.path())
                                .is_ok_and(|t| t.contains("wasm_bindgen_test")));
                    wasm.then(|| n.trim_end_matches(".rs").to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Serve dist/ under a sub-path (as on GitHub Pages) and run the playwright-core e2e script.
fn run_e2e(root: &Path, tmp: &Path) -> Res<String> {
    let dist = root.join("dist");
    if !dist.join("index.html").is_file() {
        return Err("dist/ was not built".into());
    }
    let shots = root.join("target").join("screenshots");
    let server = Server::start(&dist, 0, "/lora-one-lab/")?;
    let _ = fs::create_dir_all(&shots);
    let mut c = Command::new("node");
    c.current_dir(npm_dir(root))
        .arg("e2e.mjs")
        .env("E2E_URL", &server.url)
        .env("E2E_SHOTS", &shots)
        .env("E2E_TMP", tmp)
        .env(
            "CHROMIUM",
            which("chromium").unwrap_or_else(|| "/usr/bin/chromium".into()),
        );
    let r = run(&mut c);
    drop(server);
    let bench = fs::read_to_string(shots.join("bench.json"))
        .map(|b| b.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    r.map(|_| format!("screenshots in {}; benchmarks {bench}", shots.display()))
}
