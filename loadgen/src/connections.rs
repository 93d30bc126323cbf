//! `connections`: many idle WebSocket connections, joined to rooms in pairs, held open while the
//! server's resident memory is read from `/proc/<pid>/status` (summed over the pids given: the
//! nodes of a cluster). With several nodes, the two members of every pair are on different nodes.
//!
//! Every connection has a task that keeps polling its stream, so server pings are answered (by
//! tungstenite, when the stream is read) and a dropped connection is noticed and counted.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::Common;
use crate::compare::Subject;
use crate::redis::{self, Usage};
use crate::report::{self, Outcome, Report};
use crate::ws::{self, ServerMessage, SourceAddrs, Ws};

/// Pairs set up at once.
const SETUP_PARALLELISM: usize = 128;

/// Idle clients receive almost nothing: a small read buffer keeps the load generator's own memory
/// at a few KiB per connection, so one process can hold ~19,000 of them.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// File descriptors the load generator needs besides its connections (stdio, runtime, /proc reads).
const SPARE_FDS: u64 = 64;

/// How long closing may take once the hold is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one operation is, for the Redis numbers.
const PER_CONNECTION: &str = "connection";

/// Options of the `connections` scenario.
#[derive(clap::Args, Debug, Clone)]
#[command(mut_arg("baseline_url", |arg| arg.requires("baseline_pid")))]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Pid of the server at `--url`, to read its RSS; with several nodes, their pids,
    /// comma-separated: the RSS is their sum.
    #[arg(long)]
    pub server_pid: Option<Pids>,
    /// Pid (or pids, comma-separated) of the baseline.
    #[arg(long)]
    pub baseline_pid: Option<Pids>,
    /// Connections to open (rounded up to an even number: they join rooms in pairs).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=200_000))]
    pub count: u32,
    /// Seconds to hold the connections open once they are all set up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hold: u64,
    /// Seconds to wait after set-up before the first RSS reading, so the server's allocator settles.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub settle: u64,
}

/// Results of one connections run.
#[derive(Debug, Serialize)]
pub struct ConnectionsReport {
    pub scenario: &'static str,
    pub label: String,
    pub url: String,
    pub requested: u32,
    pub established: u32,
    /// Established connections still open at the end of the hold.
    pub open_at_end: u32,
    pub setup_s: f64,
    pub hold_s: u64,
    pub client_fd_limit: u64,
    /// The processes whose RSS is summed.
    pub server_pids: Vec<u32>,
    pub server_rss_before_bytes: Option<u64>,
    /// Right after set-up and the settle pause.
    pub server_rss_established_bytes: Option<u64>,
    /// At the end of the hold, connections still open.
    pub server_rss_after_bytes: Option<u64>,
    /// `(after - before) / established`.
    pub server_bytes_per_connection: Option<f64>,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// What the target's Redis did from before set-up to the end of the hold (with `--redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Usage>,
}

/// Server processes whose resident memory is summed: the nodes of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pids(Vec<u32>);

impl FromStr for Pids {
    type Err = String;

    /// A comma-separated list of pids, at least one.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(|pid| pid.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map(Pids)
            .map_err(|e| format!("{list:?} is not a comma-separated list of pids: {e}"))
    }
}

impl Pids {
    /// The summed RSS of every process, in bytes; an error if any cannot be read.
    pub fn rss(&self) -> Result<u64, RssError> {
        self.sum(read_rss)
    }

    /// The sum of `read` over every pid; an error if any read fails.
    fn sum(&self, read: impl Fn(u32) -> Result<u64, RssError>) -> Result<u64, RssError> {
        self.0.iter().map(|pid| read(*pid)).sum()
    }
}

/// Runs the scenario (and the baseline comparison, when asked) and prints the report.
pub async fn run(args: &ConnectionsArgs) -> Outcome {
    let fd_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("loadgen: cannot raise RLIMIT_NOFILE: {e}");
            return Outcome::Failed;
        }
    };
    let wanted = u64::from(args.count) + SPARE_FDS;
    if wanted > fd_limit {
        eprintln!(
            "loadgen: {} connections need about {wanted} descriptors but the limit is {fd_limit}; \
             run several load processes with smaller --count",
            args.count
        );
        return Outcome::Failed;
    }
    let target = (args.common.target(), args.server_pid.as_ref());
    let Some(baseline) = args.common.baseline() else {
        return report::emit(args.common.json, &measure(args, target, fd_limit).await);
    };
    let baseline = measure(args, (baseline, args.baseline_pid.as_ref()), fd_limit).await;
    // Let the kernel reap the baseline's sockets before the next run opens as many again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = measure(args, target, fd_limit).await;
    let ratios = ["server_bytes_per_connection", "established", "setup_s"];
    report::emit_comparison(args.common.json, "connections", &target, &baseline, &ratios)
}

/// Runs the scenario once against `subject`, reading the RSS of `pids`.
async fn measure(
    args: &ConnectionsArgs,
    (subject, pids): (Subject<'_>, Option<&Pids>),
    client_fd_limit: u64,
) -> ConnectionsReport {
    let mut errors = BTreeMap::<String, u64>::new();
    let mut error = |kind: String| *errors.entry(kind).or_default() += 1;
    let rss = |what: &str, error: &mut dyn FnMut(String)| {
        pids?
            .rss()
            .inspect_err(|e| error(format!("rss_{what}: {e}")))
            .ok()
    };
    let rss_before = rss("before", &mut error);
    let meter = redis::start(subject.redis, &mut error).await;

    let started = Instant::now();
    let pairs = args.count.div_ceil(2);
    let sources = SourceAddrs::default();
    let run_id: u32 = rand::random();
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let dropped = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut idle = JoinSet::new();
    let mut established = 0u32;
    let mut joining = futures_util::stream::iter(0..pairs)
        .map(|index| {
            let (sources, room) = (&sources, format!("lg-idle-{run_id:08x}-{index}"));
            async move { ws::join_pair(subject.service, sources, &room, config).await }
        })
        .buffer_unordered(SETUP_PARALLELISM);
    while let Some(joined) = joining.next().await {
        match joined {
            Ok((first, second)) => {
                for member in [first, second] {
                    established += 1;
                    idle.spawn(hold_idle(member.ws, dropped.clone(), stop_rx.clone()));
                }
            }
            Err(e) => error(e.kind()),
        }
    }
    drop(joining);
    let setup_s = started.elapsed().as_secs_f64();

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_established = rss("established", &mut error);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let rss_after = rss("after", &mut error);
    let open_at_end = established.saturating_sub(dropped.load(Ordering::Acquire) as u32);
    let redis = redis::stop(meter, PER_CONNECTION, u64::from(established), &mut error).await;

    let _ = stop_tx.send(true);
    let closing = async {
        while let Some(result) = idle.join_next().await {
            if let Err(e) = result {
                error(format!("idle_task_panicked: {e}"));
            }
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        idle.abort_all();
    }
    let lost = u64::from(established - open_at_end);
    if lost > 0 {
        *errors.entry("dropped_while_idle".to_owned()).or_default() += lost;
    }

    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if established > 0 => {
            Some((after as f64 - before as f64) / f64::from(established))
        }
        _ => None,
    };
    ConnectionsReport {
        scenario: "connections",
        label: subject.label.to_owned(),
        url: subject.service.to_string(),
        requested: pairs * 2,
        established,
        open_at_end,
        setup_s,
        hold_s: args.hold,
        client_fd_limit,
        server_pids: pids.map_or_else(Vec::new, |pids| pids.0.clone()),
        server_rss_before_bytes: rss_before,
        server_rss_established_bytes: rss_established,
        server_rss_after_bytes: rss_after,
        server_bytes_per_connection: per_connection,
        errors: errors.values().sum(),
        error_kinds: errors,
        redis,
    }
}

/// Keeps one connection polled until told to stop, then closes it. Counts it in `dropped` if the
/// server ends it first or sends something an idle member should not get.
async fn hold_idle(mut ws: Ws, dropped: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let kind = serde_json::from_str::<ServerMessage>(&text).map(|m| m.kind.into_owned());
                    if !matches!(kind.as_deref(), Ok("pong")) {
                        // peer_disconnected, server_shutdown, error...: this connection is no longer idle in a room.
                        dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite while we poll
                Some(Err(_)) | None => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(None).await;
}

/// Why the server's RSS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RssError {
    #[error("reading /proc/<pid>/status: {0}")]
    Read(#[from] std::io::Error),
    #[error("no VmRSS line in /proc/<pid>/status")]
    Missing,
}

/// Resident set size of `pid` in bytes, from `VmRSS` in `/proc/<pid>/status`.
pub fn read_rss(pid: u32) -> Result<u64, RssError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or(RssError::Missing)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

impl Report for ConnectionsReport {
    fn clean(&self) -> bool {
        self.errors == 0 && self.established == self.requested
    }

    fn table(&self) -> String {
        let mib = |b: Option<u64>| {
            b.map_or("n/a".to_owned(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        let mut out = format!(
            "connections [{}] {}: {} requested, {} established in {:.1} s, {} open after {} s hold\n  \
             server RSS before {}, established {}, after {}; per connection {}\n  errors {}\n",
            self.label,
            self.url,
            self.requested,
            self.established,
            self.setup_s,
            self.open_at_end,
            self.hold_s,
            mib(self.server_rss_before_bytes),
            mib(self.server_rss_established_bytes),
            mib(self.server_rss_after_bytes),
            self.server_bytes_per_connection
                .map_or("n/a (no --server-pid)".to_owned(), |b| format!("{b:.0} B")),
            self.errors
        );
        if let Some(redis) = &self.redis {
            out += &redis.line();
        }
        for (kind, count) in &self.error_kinds {
            out += &format!("  error {kind}: {count}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tsignalpost\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(read_rss(std::process::id()).expect("rss") > 0);
    }

    #[test]
    fn pid_lists_parse_and_sum_their_rss() {
        let pids: Pids = "12, 30,4".parse().expect("three pids");
        assert_eq!(pids, Pids(vec![12, 30, 4]));
        let fake = |pid: u32| match pid {
            0 => Err(RssError::Missing),
            pid => Ok(u64::from(pid) * 1000),
        };
        assert_eq!(pids.sum(fake).expect("sum"), 46_000);
        assert!(Pids(vec![12, 0]).sum(fake).is_err());
        let me = std::process::id()
            .to_string()
            .parse::<Pids>()
            .expect("own pid");
        assert!(me.rss().expect("own rss") > 0);
        for bad in ["", "1,", "x", "1,,2", "-1"] {
            assert!(bad.parse::<Pids>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_baseline_needs_its_pid() {
        use clap::Parser;

        use crate::cli::Cli;
        let base = [
            "loadgen",
            "connections",
            "--baseline-url",
            "http://127.0.0.1:2",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        let with_pids = base.iter().chain(&["--baseline-pid", "1,2"]);
        assert!(Cli::try_parse_from(with_pids).is_ok());
    }
}
