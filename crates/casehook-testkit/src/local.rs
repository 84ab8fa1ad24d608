//! The private server: initdb a scratch cluster, run `postgres` as a child process on a free
//! port, wait until it accepts connections, make databases with `createdb`, and stop it again.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::scratch;
use crate::sys::{self, User};
use crate::tools::{Probe, ServerTools};

/// How long a starting server may take before we give up and show its log.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often to try a fresh port when the chosen one was taken before the server bound it.
const PORT_ATTEMPTS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The superuser initdb creates; trust authentication, so no password.
pub(crate) const SUPERUSER: &str = "postgres";

/// A running server this process started and owns.
#[derive(Debug)]
pub(crate) struct LocalServer {
    pub(crate) port: u16,
    /// The scratch directory: cluster, log and socket.
    dir: PathBuf,
    child: Mutex<Child>,
    tools: ServerTools,
}

impl LocalServer {
    /// Starts a server on a thread that lives as long as the process.
    ///
    /// Linux sends the parent-death signal when the *thread* that spawned a child exits, not
    /// the process: spawned from a test's thread, the server would be SIGKILLed as soon as
    /// that one test finished. The keeper thread parks forever instead.
    pub(crate) fn start(tools: ServerTools) -> Result<Self, String> {
        let (sender, receiver) = mpsc::channel();
        thread::Builder::new()
            .name("casehook-pg-parent".to_owned())
            .spawn(move || {
                let started = start_here(tools);
                let running = started.is_ok();
                let _ = sender.send(started);
                if running {
                    loop {
                        thread::park();
                    }
                }
            })
            .map_err(|e| format!("could not spawn the thread that starts PostgreSQL: {e}"))?;
        receiver
            .recv()
            .map_err(|_| "the thread starting PostgreSQL panicked (see its message above)")?
    }

    /// `createdb -h 127.0.0.1 -p PORT -U postgres NAME`; returns its stderr on failure.
    pub(crate) fn create_database(&self, name: &str) -> Result<(), String> {
        // Only a client: it may run as root, it connects as the postgres role over TCP.
        let output = Command::new(&self.tools.createdb)
            .args(["--no-password", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {}: {e}", self.tools.createdb.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Immediate shutdown (SIGQUIT: no checkpoint, the data is thrown away anyway), a SIGKILL
    /// if that takes longer than 5 s, then removal of the scratch directory. Never panics: it
    /// runs inside the `atexit` hook.
    pub(crate) fn shutdown(&self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = sys::send_signal(child.id(), libc::SIGQUIT);
            if !wait_for_exit(&mut child, STOP_TIMEOUT) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn start_here(tools: ServerTools) -> Result<LocalServer, String> {
    let owner = server_account()?;
    let dir = scratch::prepare(owner)?;
    let started = initdb(&tools, owner, &dir).and_then(|()| launch(&tools, owner, &dir));
    match started {
        Ok((port, child)) => Ok(LocalServer {
            port,
            dir,
            child: Mutex::new(child),
            tools,
        }),
        Err(message) => {
            // The message carries initdb's output or the server log; nothing else to keep.
            let _ = fs::remove_dir_all(&dir);
            Err(message)
        }
    }
}

/// initdb and postgres refuse to run as root; then they run as the `postgres` account.
fn server_account() -> Result<Option<User>, String> {
    if !sys::is_root() {
        return Ok(None);
    }
    match sys::lookup_user(SUPERUSER) {
        Ok(Some(user)) => Ok(Some(user)),
        Ok(None) => Err(format!(
            "casehook-testkit runs as root, and PostgreSQL's server refuses to: it would run \
             it as the `{SUPERUSER}` system user, but there is none. Run `apt-get install \
             postgresql` (which creates it) or `useradd --system {SUPERUSER}`, or run the tests \
             as an ordinary user"
        )),
        Err(e) => Err(format!(
            "could not look up the `{SUPERUSER}` system user: {e}"
        )),
    }
}

/// A command for a server program: as `owner` when given, from inside the scratch directory
/// (the caller's working directory may be unreadable to `owner`), killed with its parent.
fn server_command(program: &Path, owner: Option<User>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).stdin(Stdio::null());
    if let Some(owner) = owner {
        // std drops supplementary groups, then calls setgid and setuid, before any pre_exec.
        command.uid(owner.uid).gid(owner.gid);
    }
    sys::die_with_parent(&mut command);
    command
}

fn initdb(tools: &ServerTools, owner: Option<User>, dir: &Path) -> Result<(), String> {
    let output = server_command(&tools.initdb, owner, dir)
        .arg("-D")
        .arg(scratch::data_dir(dir))
        .args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .output()
        .map_err(|e| format!("could not run {}: {e}", tools.initdb.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let account = if owner.is_some() {
        format!(" as the `{SUPERUSER}` user")
    } else {
        String::new()
    };
    Err(format!(
        "initdb from {}{account} failed ({}):\n{}{}",
        tools.bin_dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    ))
}

/// Starts the server on a free port, trying a fresh port when the chosen one was taken.
fn launch(tools: &ServerTools, owner: Option<User>, dir: &Path) -> Result<(u16, Child), String> {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port().map_err(|e| format!("could not find a free port: {e}"))?;
        let mut child = spawn_server(tools, owner, dir, port)?;
        match wait_until_ready(&mut child, tools, port, dir) {
            Ok(()) => return Ok((port, child)),
            Err(NotReady::PortTaken) => continue,
            Err(NotReady::Failed(message)) => return Err(message),
        }
    }
    Err(format!(
        "PostgreSQL could not bind a free port in {PORT_ATTEMPTS} attempts; log:\n{}",
        read_log(dir)
    ))
}

/// Binding port 0 lets the kernel pick a free port; it stays free, with luck, until the
/// server binds it (if not, [`launch`] retries).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn spawn_server(
    tools: &ServerTools,
    owner: Option<User>,
    dir: &Path,
    port: u16,
) -> Result<Child, String> {
    let log_path = scratch::log_file(dir);
    let log = File::create(&log_path)
        .and_then(|log| Ok((log.try_clone()?, log)))
        .map_err(|e| format!("could not create {}: {e}", log_path.display()))?;
    server_command(&tools.postgres, owner, dir)
        .arg("-D")
        .arg(scratch::data_dir(dir))
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300"])
        .stdout(log.0)
        .stderr(log.1)
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", tools.postgres.display()))
}

enum NotReady {
    /// Another process bound the port between our probe and the server's bind.
    PortTaken,
    Failed(String),
}

fn wait_until_ready(
    child: &mut Child,
    tools: &ServerTools,
    port: u16,
    dir: &Path,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = read_log(dir);
            if log.contains("already in use") {
                return Err(NotReady::PortTaken);
            }
            return Err(NotReady::Failed(format!(
                "PostgreSQL exited ({status}) before accepting connections; log:\n{log}"
            )));
        }
        // The probe may have reached a stranger on our port; our server must still be alive.
        if accepts_connections(&tools.probe, port) && matches!(child.try_wait(), Ok(None)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NotReady::Failed(format!(
                "PostgreSQL did not accept connections on 127.0.0.1:{port} within {} s; log:\n{}",
                READY_TIMEOUT.as_secs(),
                read_log(dir)
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn accepts_connections(probe: &Probe, port: u16) -> bool {
    let port_arg = port.to_string();
    let connection = [
        "-h",
        "127.0.0.1",
        "-p",
        &port_arg,
        "-U",
        SUPERUSER,
        "-d",
        "postgres",
    ];
    let mut command = match probe {
        Probe::PgIsReady(pg_isready) => {
            let mut command = Command::new(pg_isready);
            command.args(["-q", "-t", "1"]).args(connection);
            command
        }
        Probe::Psql(psql) => {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
                return false;
            }
            let mut command = Command::new(psql);
            command
                .args(["-X", "-q", "--no-password", "-c", "select 1"])
                .args(connection);
            command
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn read_log(dir: &Path) -> String {
    match fs::read(scratch::log_file(dir)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(no server log: {e})"),
    }
}
