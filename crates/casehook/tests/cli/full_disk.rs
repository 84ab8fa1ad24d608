//! A full disk under the database: writes are refused with a clear answer, what was accepted
//! before stays, and writes work again as soon as there is room, without a restart.
//!
//! The disk is a real one: a small tmpfs mounted for the test (under SQLite's data directory,
//! or as a PostgreSQL tablespace holding the test database). Mounting needs root (or
//! CAP_SYS_ADMIN); where that is not given the tests say so loudly and do nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::{create_form, list_cases, new_case};
use crate::harness::{Response, Server, get, path_str, post};

/// A tmpfs of `size` (e.g. `4m`) mounted on a temporary directory, unmounted on drop.
struct SmallDisk {
    _root: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let root = tempfile::tempdir().expect("temp dir");
        let mount = root.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "casehook-test",
            ])
            .arg(&mount)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { _root: root, mount }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs to fill (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mount)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount: {out:?}");
    }

    /// Bytes in use on the disk (as `df` counts them).
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&self.mount)
            .output()
            .expect("run df");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("df said: {text}"))
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
    }
}

fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = get(addr, "/metrics", None).expect("metrics").body;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A note of `len` characters that does not compress (PostgreSQL compresses long values).
fn incompressible(seed: usize, len: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn case_notes(addr: std::net::SocketAddr, key: &str) -> Vec<String> {
    let mut notes: Vec<String> = list_cases(addr, key)
        .iter()
        .map(|c| c["data"]["note"].as_str().expect("note").to_owned())
        .collect();
    notes.sort();
    notes
}

/// `POST /api/v1/cases` with a case of `form` holding `note`; the answer, whatever it is.
fn post_case(server: &Server, key: &str, form: &str, note: &str) -> Response {
    post(
        server.addr,
        "/api/v1/cases",
        Some(key),
        &new_case(form, note),
    )
    .expect("post a case")
}

/// Create cases through `server` until the disk is full, check how a full disk answers and
/// that exactly the acknowledged cases are stored, grow the disk, and check that writes
/// work again. The notes acknowledged, sorted.
fn fill_then_grow(server: &Server, key: &str, disk: &SmallDisk, grown: &str) -> Vec<String> {
    let form = create_form(server.addr, key, "Claims");
    let mut accepted: Vec<String> = Vec::new();
    let refusal = loop {
        assert!(accepted.len() < 20_000, "the disk never filled up");
        let note = incompressible(accepted.len(), 2000);
        let answer = post_case(server, key, &form, &note);
        if answer.status != 201 {
            break answer;
        }
        accepted.push(note);
    };
    assert!(!accepted.is_empty(), "some cases fit: {}", refusal.body);
    assert!(
        accepted.len() < 1000,
        "listing takes one page: {}",
        accepted.len()
    );
    assert_eq!(refusal.status, 507, "{}", refusal.body);
    assert_eq!(
        refusal.json()["error"]["code"],
        "storage_full",
        "{}",
        refusal.body
    );

    // Every later write gets the same answer, never a 500, and the process says why.
    for n in 0..5 {
        let note = incompressible(100_000 + n, 2000);
        let answer = post_case(server, key, &form, &note);
        assert_eq!(answer.status, 507, "{}", answer.body);
    }
    let ready = get(server.addr, "/readyz", None).expect("readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["error"]["code"], "storage_full");
    assert_eq!(metric(server.addr, "casehook_storage_full"), Some(1.0));

    // Reads still work, and hold exactly what was acknowledged.
    accepted.sort();
    assert_eq!(case_notes(server.addr, key), accepted);

    // Room is made (the operator grows the disk): writes work again, no restart needed.
    disk.resize(grown);
    let answer = post_case(server, key, &form, "after the disk grew");
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        get(server.addr, "/readyz", None).expect("readyz").status,
        200
    );
    assert_eq!(metric(server.addr, "casehook_storage_full"), Some(0.0));
    accepted.push("after the disk grew".into());
    accepted.sort();
    accepted
}

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_what_was_accepted_and_recovers_when_room_is_made() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let data = disk.path().join("data");
    let mut server = Server::sqlite(&data);
    let key = server.admin_key();
    let expected = fill_then_grow(&server, &key, &disk, "16m");
    server.stop();

    // And after a restart, everything acknowledged is there, nothing refused is.
    let mut again = Server::sqlite(&data);
    assert_eq!(case_notes(again.addr, &key), expected);
    again.stop();
}

/// `psql` from the PostgreSQL installation the testkit uses, or from `PATH`.
fn psql() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/psql"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// Run `sql` on `url`, which must succeed.
fn run_sql(url: &str, sql: &str) {
    let out = Command::new(psql())
        .args(["-v", "ON_ERROR_STOP=1", "-q", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_postgresql_tablespace_refuses_writes_with_507_and_recovers_when_room_is_made() {
    let Some(url) = casehook_testkit::postgres().map(|pg| pg.create_database()) else {
        return;
    };
    let Some(disk) = SmallDisk::mount("64m") else {
        return;
    };
    // The tablespace's directory belongs to the server's account (`postgres` when the tests
    // run as root, which mounting needs).
    let chowned = Command::new("chown")
        .arg("postgres")
        .arg(disk.path())
        .status()
        .expect("run chown");
    assert!(
        chowned.success(),
        "chown postgres {}",
        disk.path().display()
    );
    let (server_url, database) = url.rsplit_once('/').expect("a database in the URL");
    let admin_url = format!("{server_url}/postgres");
    let tablespace = format!("full_{database}");
    run_sql(
        &admin_url,
        &format!(
            "CREATE TABLESPACE {tablespace} LOCATION '{}'",
            disk.path().display()
        ),
    );
    run_sql(
        &admin_url,
        &format!("ALTER DATABASE {database} SET TABLESPACE {tablespace}"),
    );

    let data = tempfile::tempdir().expect("data dir");
    let args = [
        "--database-url",
        url.as_str(),
        "--data-dir",
        path_str(data.path()),
    ];
    let mut server = Server::start(&[], &args, &[]);
    let key = server.admin_key();
    // The database's catalogs and casehook's tables are in place: leave 1 MiB of room.
    disk.resize(&format!("{}k", disk.used() / 1024 + 1024));
    let expected = fill_then_grow(&server, &key, &disk, "64m");
    assert_eq!(case_notes(server.addr, &key), expected);
    server.stop();

    run_sql(&admin_url, &format!("DROP DATABASE {database}"));
    run_sql(&admin_url, &format!("DROP TABLESPACE {tablespace}"));
}
