//! Outside programs (coturn, nginx, openssl, curl) that some tests drive for real.
//!
//! A test that needs one calls [`require_program`] first and returns early when it says
//! no. On a developer machine without the program that is a skip with a printed reason;
//! with `SIGNALPOST_REQUIRE_ALL=1` (as `.ci/run` sets) a missing program fails the test,
//! so CI cannot pass by skipping.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Set to `1` to turn every skip for a missing program into a failure.
pub const REQUIRE_ALL_ENV: &str = "SIGNALPOST_REQUIRE_ALL";

/// How long a started daemon may take to accept connections before the test gives up.
/// Generous because CI machines are slow and shared; it bounds a hang, it is not a
/// performance assertion.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Bounds one run of a client program (turnutils_uclient, curl, openssl) so that a hung
/// child fails the test instead of wedging the suite.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// Daemons such as nginx live in `sbin`, which a non-root `PATH` may lack.
const EXTRA_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// Where `name` is installed: the first executable found on `PATH`, then in the `sbin`
/// directories.
pub fn program_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// True when `name` is installed. When it is not: prints `SKIPPED: <name> not installed`
/// and returns false, or panics if `SIGNALPOST_REQUIRE_ALL=1`.
pub fn require_program(name: &str) -> bool {
    // Straight to the process's stderr: `eprintln!` is captured by the test harness and
    // only shown for failures, so a skip would go unnoticed.
    require_program_reporting(name, &mut std::io::stderr())
}

/// [`require_program`], reporting a skip to `report`.
fn require_program_reporting(name: &str, report: &mut dyn std::io::Write) -> bool {
    if program_path(name).is_some() {
        return true;
    }
    if std::env::var(REQUIRE_ALL_ENV).as_deref() == Ok("1") {
        panic!("{name} not installed, and {REQUIRE_ALL_ENV}=1 forbids skipping");
    }
    let _ = writeln!(report, "SKIPPED: {name} not installed");
    false
}

/// [`require_program`] for several programs; all are checked so one run names every gap.
pub fn require_programs(names: &[&str]) -> bool {
    let found: Vec<bool> = names.iter().map(|name| require_program(name)).collect();
    found.into_iter().all(|f| f)
}

/// The installed path of `name`, for `Command::new`. Call after [`require_program`].
pub fn program(name: &str) -> PathBuf {
    program_path(name).unwrap_or_else(|| PathBuf::from(name))
}

/// A loopback port that is free for both TCP and UDP right now (coturn listens on both).
/// Another process could still take it before the caller binds; callers bind quickly.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
        let port = tcp
            .local_addr()
            .expect("bound socket has an address")
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `addr`, failing with `describe()`
/// (e.g. the daemon's log) if `still_running()` turns false or [`STARTUP_DEADLINE`] passes.
pub async fn wait_for_tcp(
    addr: SocketAddr,
    mut still_running: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        assert!(
            still_running(),
            "daemon exited before listening on {addr}:\n{}",
            describe()
        );
        assert!(
            start.elapsed() < STARTUP_DEADLINE,
            "nothing listening on {addr} after {STARTUP_DEADLINE:?}:\n{}",
            describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `path` until it contains `needle`; false if [`STARTUP_DEADLINE`] passes first.
/// Daemons write their logs a moment after answering, so a check right after a client
/// returns could miss the line.
pub async fn wait_for_log(path: &Path, needle: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < STARTUP_DEADLINE {
        if read_lossy(path).contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs a client program to completion with [`CLIENT_DEADLINE`], killing it if it hangs.
pub async fn run_client(command: &mut tokio::process::Command) -> std::process::Output {
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let described = format!("{command:?}");
    match tokio::time::timeout(CLIENT_DEADLINE, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => panic!("could not run {described}: {err}"),
        Err(_) => panic!("{described} still running after {CLIENT_DEADLINE:?}"),
    }
}

/// A child process killed (by its own pid) and reaped when the test ends, pass or fail.
pub struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    /// Takes ownership of a started child.
    pub fn new(child: std::process::Child) -> Self {
        Self { child }
    }

    /// False once the process has exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file's text, or an empty string when it does not exist (yet).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[test]
fn a_missing_program_is_a_skip_or_under_require_all_a_failure() {
    let name = "signalpost-test-no-such-program";
    let require_all = std::env::var(REQUIRE_ALL_ENV).as_deref() == Ok("1");

    // The skip line goes to a buffer, not to stderr: this test must not print a skip of its
    // own on every run.
    let mut report = Vec::new();
    let outcome =
        std::panic::catch_unwind(move || (require_program_reporting(name, &mut report), report));

    if require_all {
        assert!(
            outcome.is_err(),
            "{REQUIRE_ALL_ENV}=1 must fail on a missing program"
        );
    } else {
        let (found, report) = outcome.unwrap();
        assert!(!found);
        assert_eq!(
            String::from_utf8(report).unwrap(),
            format!("SKIPPED: {name} not installed\n")
        );
    }
}

#[test]
fn an_installed_program_is_found() {
    assert!(require_program("sh"));
    assert!(program("sh").is_absolute());
}
