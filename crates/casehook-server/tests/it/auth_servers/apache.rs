//! A real apache2 (Debian's `apache2-bin`) with mod_auth_digest in front of a static JSON
//! file, started in the foreground on `127.0.0.1:<free port>` from a generated minimal
//! configuration in a temporary directory (ServerRoot, PidFile, ErrorLog, mutexes and the
//! htdigest user file, written here without the interactive tool).
//!
//! When `/usr/sbin/apache2` is absent [`Apache::start`] prints a loud SKIPPED banner and
//! returns `None`; with `CASEHOOK_REQUIRE_APACHE=1` it panics instead.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use md5::{Digest, Md5};
use tempfile::TempDir;

pub const BINARY: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const REQUIRE_VAR: &str = "CASEHOOK_REQUIRE_APACHE";
/// The file behind the protected location.
pub const BODY: &str = r#"{"ok":true,"from":"apache"}"#;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub realm: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    /// `AuthDigestNonceLifetime` in seconds (apache's default is 300).
    pub nonce_lifetime: u32,
    /// `AuthDigestNcCheck On`: apache checks that each nonce count is the next one.
    pub nc_check: bool,
}

/// A running apache2; stopped when dropped.
#[derive(Debug)]
pub struct Apache {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

fn skip(reason: &str) {
    let wanted =
        std::env::var(REQUIRE_VAR).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    assert!(!wanted, "{REQUIRE_VAR} is set, but {reason}");
    let rule = "=".repeat(78);
    let banner = format!(
        "\n{rule}\nWARNING: the apache2 Digest test is SKIPPED: {reason}.\n\
         Install it with `apt-get install apache2-bin`; set {REQUIRE_VAR}=1 to make this an \
         error.\n{rule}\n\n"
    );
    // Straight to the stream: libtest captures `eprintln!` of passing tests.
    let _ = std::io::stderr().lock().write_all(banner.as_bytes());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Apache {
    /// Start apache2, or `None` (after saying why) when it is not installed.
    pub async fn start(setup: &Setup) -> Option<Self> {
        if !Path::new(BINARY).exists() {
            skip(&format!("{BINARY} is not installed"));
            return None;
        }
        if !Path::new(MODULES).join("mod_auth_digest.so").exists() {
            skip(&format!("{MODULES}/mod_auth_digest.so is missing"));
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary ServerRoot");
        write_files(dir.path(), setup);
        let mut apache = Self {
            url: String::new(),
            port: 0,
            child: None,
            dir,
        };
        apache.launch().await;
        Some(apache)
    }

    /// Stop the server and start a new one on the same port: its nonces are new, as after
    /// any restart (mod_auth_digest makes a new secret each time).
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Start on a free port (the same one after a restart), retrying when another process
    /// took it first; wait until it answers.
    async fn launch(&mut self) {
        let keep_port = self.port != 0;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = if keep_port { self.port } else { free_port() };
            let config = self.dir.path().join("httpd.conf");
            let listen = self.dir.path().join("listen.conf");
            std::fs::write(&listen, format!("Listen 127.0.0.1:{port}\n"))
                .expect("write listen.conf");
            let child = Command::new(BINARY)
                .arg("-f")
                .arg(&config)
                .arg("-DFOREGROUND")
                // Its own process group: prefork's shutdown signals the whole group.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn apache2");
            self.child = Some(child);
            self.port = port;
            self.url = format!("http://127.0.0.1:{port}");
            if self.wait_ready().await {
                return;
            }
            last_error =
                std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            self.stop();
        }
        panic!("apache2 did not start; its error log:\n{last_error}");
    }

    /// Whether it answers on its port before it exits or 15 s pass.
    async fn wait_ready(&mut self) -> bool {
        // The test app started first has installed rustls' crypto provider.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        for _ in 0..150 {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            let answer = client.get(format!("{}/thing.json", self.url)).send().await;
            if answer.is_ok_and(|a| a.status() == 401) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// `apache2 -k stop` (SIGTERM to the parent, which stops its children), then wait;
    /// SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new(BINARY)
            .arg("-f")
            .arg(self.dir.path().join("httpd.conf"))
            .args(["-k", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// apache's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_files(root: &Path, setup: &Setup) {
    let docs = root.join("htdocs");
    std::fs::create_dir(&docs).expect("create htdocs");
    std::fs::write(docs.join("thing.json"), BODY).expect("write thing.json");
    // htdigest's format: user:realm:MD5(user:realm:password).
    let ha1 = hex::encode(Md5::digest(
        format!("{}:{}:{}", setup.user, setup.realm, setup.password).as_bytes(),
    ));
    let users = root.join("users.digest");
    std::fs::write(&users, format!("{}:{}:{ha1}\n", setup.user, setup.realm))
        .expect("write the user file");
    let r = |p: PathBuf| p.display().to_string();
    let modules = [
        ("mpm_prefork_module", "mod_mpm_prefork.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("auth_digest_module", "mod_auth_digest.so"),
    ]
    .iter()
    .map(|(name, file)| format!("LoadModule {name} {MODULES}/{file}\n"))
    .collect::<String>();
    let config = format!(
        r#"ServerRoot "{root}"
ServerName 127.0.0.1
Include "{listen}"
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel info
DefaultRuntimeDir "{root}"
Mutex file:{root} default
{modules}StartServers 1
MinSpareServers 1
MaxSpareServers 2
MaxRequestWorkers 8
DocumentRoot "{docs}"
<Directory "{docs}">
    AuthType Digest
    AuthName "{realm}"
    AuthDigestProvider file
    AuthUserFile "{users}"
    AuthDigestNonceLifetime {lifetime}
    AuthDigestNcCheck {nc_check}
    Require valid-user
    ForceType application/json
</Directory>
"#,
        root = root.display(),
        listen = r(root.join("listen.conf")),
        docs = r(docs),
        users = r(users),
        realm = setup.realm,
        lifetime = setup.nonce_lifetime,
        nc_check = if setup.nc_check { "On" } else { "Off" },
    );
    std::fs::write(root.join("httpd.conf"), config).expect("write httpd.conf");
}
