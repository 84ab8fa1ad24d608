//! Running the real `casehook` binary as a child process: spawning it on a free port,
//! capturing its output, waiting for readiness, signalling it, and a small blocking HTTP/1.1
//! client to talk to it. Every wait here is bounded, and a [`Server`] kills its process when
//! dropped, so a failing test leaves nothing running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to answer `GET /readyz` after being started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit once asked to (or once it failed).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect, read and write timeout of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables the binary reads (and the ones that add backtraces to its errors);
/// removed from every child so the developer's own settings cannot leak into a test.
const CASEHOOK_VARS: &[&str] = &[
    "CASEHOOK_LISTEN",
    "CASEHOOK_DATA_DIR",
    "CASEHOOK_DATABASE_URL",
    "CASEHOOK_BODY_LIMIT",
    "CASEHOOK_BOOTSTRAP_ADMIN_KEY",
    "CASEHOOK_LOG_FORMAT",
    "CASEHOOK_ALLOW_PRIVATE_NETWORKS",
    "CASEHOOK_ALLOW_CIDRS",
    "CASEHOOK_DELIVERY_LEASE_SECS",
    "CASEHOOK_POLL_INTERVAL_MS",
    "CASEHOOK_MASTER_KEY",
    "CASEHOOK_ROLE",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
];

/// A `casehook` command with a clean environment.
pub fn casehook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_casehook"));
    for var in CASEHOOK_VARS {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Run a command to completion, killing it if it outlives [`EXIT_TIMEOUT`].
pub fn run_to_exit(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn casehook");
    let stdout = capture(child.stdout.take().expect("piped stdout"));
    let stderr = capture(child.stderr.take().expect("piped stderr"));
    let status = match wait_exit(&mut child, EXIT_TIMEOUT) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("casehook did not exit within {EXIT_TIMEOUT:?}");
        }
    };
    Output {
        status,
        stdout: stdout.finish().into_bytes(),
        stderr: stderr.finish().into_bytes(),
    }
}

/// A running `casehook serve`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stdout: Captured,
    stderr: Captured,
}

impl Server {
    /// Start `casehook serve --listen 127.0.0.1:<free port>` with `global` (before `serve`),
    /// `args` (after it) and `envs`, and wait until it is ready.
    pub fn start(global: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn(global, args, envs);
        server.wait_ready();
        server
    }

    /// Like [`Server::start`], without waiting for readiness.
    pub fn spawn(global: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = casehook();
        command
            .args(global)
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn casehook serve");
        let stdout = capture(child.stdout.take().expect("piped stdout"));
        let stderr = capture(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// Start with SQLite in `data_dir`.
    pub fn sqlite(data_dir: &Path) -> Self {
        Self::start(&[], &["--data-dir", path_str(data_dir)], &[])
    }

    /// Wait (bounded) until `GET /readyz` answers 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "casehook exited before it was ready ({status}); stderr:\n{}",
                    self.stderr.text()
                );
            }
            if get(self.addr, "/readyz", None).is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "casehook was not ready within {READY_TIMEOUT:?}; stderr:\n{}",
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Send `signal` (`libc::SIGTERM`, `libc::SIGINT`) to the process.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// Send `signal` and wait for the process to exit; its status.
    pub fn stop_with(&mut self, signal: i32) -> ExitStatus {
        self.signal(signal);
        self.wait_exit()
    }

    /// Stop gracefully (SIGTERM) and insist on a clean exit.
    pub fn stop(&mut self) {
        let status = self.stop_with(libc::SIGTERM);
        assert!(
            status.success(),
            "casehook exited with {status} on SIGTERM; stderr:\n{}",
            self.stderr.text()
        );
    }

    /// Wait (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "casehook did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                self.stderr.text()
            )
        })
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Standard output so far (all of it once the process has exited and been waited for).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Standard error so far (all of it once the process has exited and been waited for).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Both streams, complete: only after the process has exited.
    pub fn finished_output(&mut self) -> (String, String) {
        assert!(
            matches!(self.child.try_wait(), Ok(Some(_))),
            "the process is still running"
        );
        (self.stdout.join(), self.stderr.join())
    }

    /// Wait (bounded) until standard output contains `needle`; all of it so far.
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        wait_for(&self.stdout, "stdout", needle)
    }

    /// Wait (bounded) until standard error contains `needle`; all of it so far.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        wait_for(&self.stderr, "stderr", needle)
    }

    /// The admin key printed on first start (waits for the whole block to be printed).
    pub fn admin_key(&self) -> String {
        let stdout = self.wait_for_stdout("/api/v1/forms");
        printed_keys(&stdout)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no admin key in stdout:\n{stdout}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows what the server said (libtest prints a failure's output).
        if std::thread::panicking() {
            eprintln!(
                "--- casehook on {} stderr ---\n{}",
                self.addr,
                self.stderr.text()
            );
        }
    }
}

/// Lines of stdout that are exactly a key (`chk_…`, after indentation), in order.
pub fn printed_keys(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("chk_") && !line.contains(' '))
        .map(String::from)
        .collect()
}

fn wait_for(stream: &Captured, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = stream.text();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never contained {needle:?}; it was:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for casehook") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// `kill(2)` is the one call std does not offer: `Child::kill` only sends SIGKILL.
#[allow(unsafe_code)]
fn send_signal(pid: i32, signal: i32) {
    // SAFETY: `kill` takes plain integers and touches no memory of ours; `pid` is our own
    // child, which has not been reaped yet (we hold its `Child`), so the pid cannot have been
    // reused by another process.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// One output stream of a child, collected by a thread as it is written.
#[derive(Debug)]
struct Captured {
    text: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

fn capture(stream: impl Read + Send + 'static) -> Captured {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().expect("capture lock").push_str(&line);
            line.clear();
        }
    });
    Captured {
        text,
        reader: Some(reader),
    }
}

impl Captured {
    fn text(&self) -> String {
        self.text.lock().expect("capture lock").clone()
    }

    /// Everything, once the writer has closed the stream.
    fn join(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("output reader thread");
        }
        self.text()
    }

    fn finish(mut self) -> String {
        self.join()
    }
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body))
    }
}

pub fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> std::io::Result<Response> {
    request(addr, "GET", path, key, None)
}

pub fn post(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> std::io::Result<Response> {
    request(addr, "POST", path, key, Some(body))
}

/// One request on a fresh connection (`Connection: close`), the response read to the end.
/// `key` goes into `Authorization: Bearer <key>`. An `Err` means no answer was received.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<Response> {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    request_with(addr, method, path, &headers, body)
}

/// Like [`request`], with any extra headers.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// A POST whose body has not been sent yet: the server answered `100 Continue`, so the
/// request is inside its handler, waiting for the body. [`HeldRequest::finish`] sends it.
#[derive(Debug)]
pub struct HeldRequest {
    stream: TcpStream,
    body: String,
}

/// Send the head of a JSON POST with `Expect: 100-continue` and wait for `100 Continue`.
pub fn hold_post(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: &Value,
) -> std::io::Result<HeldRequest> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    // Byte by byte, so nothing after the interim response is consumed.
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    if !interim.starts_with("HTTP/1.1 100") {
        return Err(std::io::Error::other(format!(
            "expected 100 Continue, got: {interim}"
        )));
    }
    Ok(HeldRequest { stream, body })
}

impl HeldRequest {
    /// Send the body and read the final response.
    pub fn finish(mut self) -> std::io::Result<Response> {
        self.stream.write_all(self.body.as_bytes())?;
        let mut raw = Vec::new();
        self.stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("incomplete HTTP response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| invalid("bad chunked body"))?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}
