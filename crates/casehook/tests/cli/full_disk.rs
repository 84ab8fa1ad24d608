//! A full disk under the SQLite database: writes are refused with a clear answer, what was
//! accepted before stays, and writes work again as soon as there is room, without a restart.
//!
//! The disk is a real one: a small tmpfs mounted for the test. Mounting needs root (or
//! CAP_SYS_ADMIN); where that is not given the test says so loudly and does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::api::{create_form, list_cases, new_case};
use crate::harness::{Server, get, path_str, post};

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

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_what_was_accepted_and_recovers_when_room_is_made() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let data = disk.path().join("data");
    let mut server = Server::sqlite(&data);
    let key = server.admin_key();
    let form = create_form(server.addr, &key, "Claims");

    // Fill the disk with cases of 2 KB notes until the server says no.
    let filler = "x".repeat(2000);
    let mut accepted: Vec<String> = Vec::new();
    let refusal = loop {
        assert!(accepted.len() < 5000, "4 MiB never filled up");
        let note = format!("{filler}{}", accepted.len());
        let answer = post(
            server.addr,
            "/api/v1/cases",
            Some(&key),
            &new_case(&form, &note),
        )
        .expect("post");
        if answer.status != 201 {
            break answer;
        }
        accepted.push(note);
    };
    assert!(!accepted.is_empty(), "some cases fit: {}", refusal.body);
    assert_eq!(refusal.status, 507, "{}", refusal.body);
    assert_eq!(
        refusal.json()["error"]["code"],
        "storage_full",
        "{}",
        refusal.body
    );

    // Every later write gets the same answer, never a 500, and the process says why.
    for n in 0..5 {
        let answer = post(
            server.addr,
            "/api/v1/cases",
            Some(&key),
            &new_case(&form, &format!("{filler}late{n}")),
        )
        .expect("post");
        assert_eq!(answer.status, 507, "{}", answer.body);
    }
    let ready = get(server.addr, "/readyz", None).expect("readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["error"]["code"], "storage_full");
    assert_eq!(metric(server.addr, "casehook_storage_full"), Some(1.0));

    // Reads still work, and hold exactly what was acknowledged.
    let notes = |cases: Vec<Value>| -> Vec<String> {
        let mut notes: Vec<String> = cases
            .iter()
            .map(|c| c["data"]["note"].as_str().expect("note").to_owned())
            .collect();
        notes.sort();
        notes
    };
    let mut expected = accepted.clone();
    expected.sort();
    assert_eq!(notes(list_cases(server.addr, &key)), expected);

    // Room is made (the operator grows the disk): writes work again, no restart needed.
    disk.resize("16m");
    let answer = post(
        server.addr,
        "/api/v1/cases",
        Some(&key),
        &new_case(&form, "after the disk grew"),
    )
    .expect("post");
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        get(server.addr, "/readyz", None).expect("readyz").status,
        200
    );
    assert_eq!(metric(server.addr, "casehook_storage_full"), Some(0.0));
    server.stop();

    // And after a restart, everything acknowledged is there, nothing refused is.
    expected.push("after the disk grew".into());
    expected.sort();
    let mut again = Server::start(&[], &["--data-dir", path_str(&data)], &[]);
    assert_eq!(notes(list_cases(again.addr, &key)), expected);
    again.stop();
}
