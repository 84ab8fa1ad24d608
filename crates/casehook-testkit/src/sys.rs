//! The only home of `unsafe` in this crate: thin, safe wrappers around the few libc calls std
//! does not offer. Each unsafe block is one call wide; everything else stays safe Rust.

use std::ffi::{CString, c_char};
use std::io;
use std::mem::MaybeUninit;
use std::process::Command;
use std::ptr;

/// A system account that PostgreSQL's binaries can run as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Whether this process runs with root's effective user id.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks a system account up by name (through NSS, like `id NAME`); `Ok(None)` when absent.
pub(crate) fn lookup_user(name: &str) -> io::Result<Option<User>> {
    const MAX_BUFFER: usize = 1 << 20;
    let name = CString::new(name).map_err(io::Error::other)?;
    let mut buffer: Vec<c_char> = vec![0; 4096];
    loop {
        let mut entry = MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call, and the buffer's real
        // length is passed; getpwnam_r (unlike getpwnam) touches no shared static state.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                entry.as_mut_ptr(),
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < MAX_BUFFER {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: a non-null result means getpwnam_r filled in `entry` completely.
        let entry = unsafe { entry.assume_init() };
        return Ok(Some(User {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        }));
    }
}

/// Whether a process with this id exists (owned by anyone). Errs on the side of "alive".
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // kill(0 or negative) would address process groups, not one process.
        return true;
    }
    // SAFETY: signal 0 delivers nothing; it only checks that the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Sends `signal` to the process `pid`.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill takes plain integers; the caller names its own child process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Registers `hook` to run when the process exits normally (`exit`, `process::exit`, or
/// returning from `main`, which is how the libtest harness ends).
pub(crate) fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `hook` is a plain function taking no arguments; the caller makes sure it never
    // unwinds (a panic escaping an `extern "C" fn` aborts the process).
    if unsafe { libc::atexit(hook) } == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit() refused the shutdown hook"))
    }
}

/// Makes the kernel SIGKILL the child `cmd` spawns when the thread that spawned it dies, so a
/// server cannot outlive a test process that was killed before its `atexit` hook could run.
///
/// `pre_exec` hooks run after std's `setgid`/`setuid` (see `Command::uid`), which matters:
/// changing credentials clears the parent-death signal.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;

    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the hook runs in the forked child before exec; it makes only async-signal-safe
    // system calls and builds its errors without allocating.
    unsafe {
        cmd.pre_exec(move || die_with_parent_in_child(parent));
    }
}

/// Elsewhere only the `atexit` hook guards against orphaned servers.
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_cmd: &mut Command) {}

#[cfg(target_os = "linux")]
fn die_with_parent_in_child(parent: libc::pid_t) -> io::Result<()> {
    // The variadic argument is read by the kernel as an unsigned long: pass one, not an int.
    let signal = libc::SIGKILL as libc::c_ulong;
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // The parent may have died between fork and prctl; then no signal would ever come.
    // SAFETY: getppid has no preconditions and cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}
