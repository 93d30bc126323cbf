//! The dialects' conformance suites in `tests/node/`, run with Node against the real binary.
//!
//! Each suite drives a dialect listener with the real client library of its protocol
//! (`socket.io-client`, `ws`). Without Node or the suites' npm packages the tests print a skip
//! (and fail when `SIGNALPOST_REQUIRE_ALL=1`; `.ci/run` installs both).

use std::path::Path;
use std::process::Command;

use crate::external::{REQUIRE_ALL_ENV, require_program};

/// Runs `node --test tests/node/<file>` against this build's binary; panics with its output when
/// a test fails.
pub fn run_node_suite(file: &str) {
    run_node_suite_with(file, &[]);
}

/// [`run_node_suite`] with `env` added to the environment of every server the suite starts
/// (e.g. `REDIS_URL`, to run it on a cluster node).
pub fn run_node_suite_with(file: &str, env: &[(&str, &str)]) {
    if !require_program("node") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir.join("node_modules").is_dir() {
        if std::env::var(REQUIRE_ALL_ENV).as_deref() == Ok("1") {
            panic!(
                "tests/node/node_modules missing (npm ci --prefix tests/node), and {REQUIRE_ALL_ENV}=1 forbids skipping"
            );
        }
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tests/node/{file}: run `npm ci --prefix tests/node` first"
        );
        return;
    }
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", file])
        .current_dir(&dir)
        .env("SIGNALPOST_BIN", env!("CARGO_BIN_EXE_signalpost"))
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "tests/node/{file} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
