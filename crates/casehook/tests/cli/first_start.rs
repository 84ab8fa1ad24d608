//! The first start creates the default workspace and prints its admin key once; later
//! starts print nothing and keep the key working.

use crate::api::forms_status;
use crate::harness::{Server, path_str, printed_keys};

#[test]
fn first_start_prints_a_working_admin_key_once() {
    let dir = tempfile::tempdir().expect("temp dir");

    let mut first = Server::sqlite(dir.path());
    let key = first.admin_key();
    let stdout = first.stdout();
    assert!(
        key.len() == "chk_".len() + 43
            && key[4..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "not a generated key: {key:?}"
    );
    let curl = format!(
        "curl -H 'Authorization: Bearer {key}' http://{}/api/v1/forms",
        first.addr
    );
    assert!(
        stdout.contains(&curl),
        "no curl line using the key in:\n{stdout}"
    );
    assert_eq!(
        printed_keys(&stdout),
        vec![key.clone()],
        "stdout:\n{stdout}"
    );
    assert_eq!(forms_status(first.addr, &key), 200);
    assert_eq!(forms_status(first.addr, "chk_notthekey"), 401);
    first.stop();
    let (_, stderr) = first.finished_output();
    assert!(!stderr.contains(&key), "the key was logged:\n{stderr}");

    let mut second = Server::sqlite(dir.path());
    assert_eq!(
        forms_status(second.addr, &key),
        200,
        "the old key stopped working"
    );
    second.stop();
    let (stdout, _) = second.finished_output();
    assert!(
        !stdout.contains("chk_") && !stdout.contains("Admin API key"),
        "a later start printed a key:\n{stdout}"
    );
}

#[test]
fn bootstrap_admin_key_from_the_environment_becomes_the_admin_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = ["--data-dir", path_str(dir.path())];

    let mut first = Server::start(
        &[],
        &data_dir,
        &[("CASEHOOK_BOOTSTRAP_ADMIN_KEY", "chk_chosen")],
    );
    assert_eq!(first.admin_key(), "chk_chosen");
    assert_eq!(forms_status(first.addr, "chk_chosen"), 200);
    first.stop();

    // On later starts the variable is ignored: it neither adds a key nor prints one.
    let mut second = Server::start(
        &[],
        &data_dir,
        &[("CASEHOOK_BOOTSTRAP_ADMIN_KEY", "chk_another")],
    );
    assert_eq!(forms_status(second.addr, "chk_chosen"), 200);
    assert_eq!(forms_status(second.addr, "chk_another"), 401);
    second.stop();
    let (stdout, _) = second.finished_output();
    assert!(
        !stdout.contains("chk_"),
        "a later start printed a key:\n{stdout}"
    );
}
