//! A server's life from outside: this test binary re-runs itself as a child process (the
//! `child_helper` test, switched on by an environment variable) and watches that child's
//! server start, survive the thread that started it, and go away with the process.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use casehook_testkit::postgres;

use crate::query;

const MODE_VAR: &str = "CASEHOOK_TESTKIT_CHILD";
const REPORT: &str = "casehook-child port=";
const SKIPPED: &str = "casehook-child skipped";

/// Not a test of its own: the body of the child process the other tests run.
#[test]
fn child_helper() {
    let Ok(mode) = std::env::var(MODE_VAR) else {
        return;
    };
    // Started from a thread that ends at once: the server must outlive it.
    let server = thread::spawn(postgres)
        .join()
        .expect("postgres() does not panic");
    let Some(pg) = server else {
        println!("{SKIPPED}");
        return;
    };
    thread::sleep(Duration::from_millis(300));
    assert_eq!(query(&pg.create_database(), "select 1"), "1");
    println!("{REPORT}{}", pg.port());
    if mode == "hang" {
        thread::sleep(Duration::from_secs(120));
    }
}

#[test]
fn exiting_process_stops_its_server_and_removes_its_directory() {
    if uses_external_server() {
        return;
    }
    let child = child_command("exit")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child runs");
    let dir = scratch_base().join(child.id().to_string());
    let output = child.wait_with_output().expect("the child finishes");
    let Some(port) = reported_port(&output) else {
        return;
    };

    assert!(
        port_is_closed(port),
        "nothing listens on port {port} any more"
    );
    assert!(!dir.exists(), "{} removed", dir.display());
}

#[test]
fn killed_process_takes_its_server_along_and_the_next_run_sweeps_its_directory() {
    if uses_external_server() {
        return;
    }
    let mut child = KillOnDrop(
        child_command("hang")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child runs"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let report = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains(REPORT) || line.contains(SKIPPED))
        .expect("the child reports its server");
    let Some(port) = port_in(&report) else {
        return;
    };
    let dir = scratch_base().join(child.0.id().to_string());
    assert!(
        dir.is_dir(),
        "{} exists while the child runs",
        dir.display()
    );

    // SIGKILL: no atexit hook runs, only the kernel's parent-death signal can stop the server.
    child.0.kill().expect("the child can be killed");
    child.0.wait().expect("the child is reaped");
    assert!(
        wait_until(Duration::from_secs(10), || port_is_closed(port)),
        "the server on port {port} died with its parent"
    );

    let next = child_command("exit").output().expect("the next child runs");
    assert!(
        reported_port(&next).is_some(),
        "the next child started a server"
    );
    assert!(!dir.exists(), "{} swept by the next run", dir.display());
}

fn uses_external_server() -> bool {
    std::env::var_os("CASEHOOK_TEST_DATABASE_URL").is_some_and(|url| !url.is_empty())
}

/// This very test binary, running only `child_helper`, in `mode`.
fn child_command(mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args([
            "lifecycle::child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE_VAR, mode);
    command
}

/// The port a finished child reported, `None` when it skipped; panics when it failed.
fn reported_port(child: &Output) -> Option<u16> {
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "the child failed ({}):\n{stdout}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
    if stdout.contains(SKIPPED) {
        return None;
    }
    let port = stdout.lines().find_map(port_in);
    Some(port.unwrap_or_else(|| panic!("the child reported no port:\n{stdout}")))
}

/// The port in a line of the child's output; libtest may have printed on that line first.
fn port_in(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once(REPORT)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(digits.parse().expect("a port number"))
}

fn port_is_closed(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
}

fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    condition()
}

fn scratch_base() -> PathBuf {
    std::env::temp_dir().join("casehook-pg-test")
}

/// Kills the hanging child should an assertion fail before the test does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
