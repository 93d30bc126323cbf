//! `pairing`: workers run the full two-stage REST flow back to back with fresh ids.
//!
//! One pairing is create (201, server-generated joinid) → check (204) → accept (200 roomid) →
//! check (200, same roomid). Any other status or body is an error and the worker starts a new one.
//! With several nodes, the four steps go to consecutive nodes ([`Service::step_node`]): each
//! worker keeps one keep-alive connection per node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::Common;
use crate::compare::Subject;
use crate::http::{Client, HttpError};
use crate::redis::{self, Usage};
use crate::report::{self, Outcome, Report};
use crate::stats::{Latency, Summary};
use crate::target::Service;

/// How long the server keeps each pending code: long enough to outlive any pairing, short enough
/// that a long run does not fill the 6-digit code space with live codes.
const EXPIRES_IN_SECONDS: u64 = 60;

/// Pause after a transport failure so a dead server costs a few errors, not a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Options of the `pairing` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct PairingArgs {
    #[command(flatten)]
    pub common: Common,
    /// Workers, each with its own keep-alive connection, each running one pairing at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Pairings per second in total (spread over the workers); 0 runs flat out. Use it to measure
    /// latency at a given load, e.g. half the flat-out rate.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub rate: u64,
}

/// What one operation is, for the Redis numbers.
const PER_PAIRING: &str = "pairing";

/// The fields compared with the baseline, as `target / baseline` ratios.
const RATIOS: [&str; 4] = [
    "pairings_per_sec",
    "latency/create/p50_us",
    "latency/create/p99_us",
    "latency/accept/p99_us",
];

/// The four requests of a pairing, in order.
#[derive(Debug, Clone, Copy)]
enum Step {
    Create,
    CheckPending,
    Accept,
    CheckAccepted,
}

impl Step {
    const ALL: [Step; 4] = [
        Step::Create,
        Step::CheckPending,
        Step::Accept,
        Step::CheckAccepted,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::CheckPending => "check_pending",
            Step::Accept => "accept",
            Step::CheckAccepted => "check_accepted",
        }
    }
}

/// Why a pairing did not complete.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{}:status_{status}", step.name())]
    Status { step: Step, status: u16 },
    #[error("{}:bad_body", step.name())]
    Body { step: Step },
    #[error("{}:transport", step.name())]
    Transport { step: Step, source: HttpError },
}

/// What one worker counted.
struct WorkerStats {
    pairings: u64,
    latency: [Latency; 4],
    errors: BTreeMap<String, u64>,
    first_transport_error: Option<String>,
}

/// Results of one pairing run.
#[derive(Debug, Serialize)]
pub struct PairingReport {
    pub scenario: &'static str,
    pub label: String,
    pub url: String,
    pub concurrency: u32,
    /// Requested pairings per second; 0 for flat out.
    pub rate: u64,
    pub duration_s: f64,
    pub pairings: u64,
    pub pairings_per_sec: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_transport_error: Option<String>,
    /// Latency per request type: create, check_pending, accept, check_accepted.
    pub latency: BTreeMap<&'static str, Summary>,
    /// What the target's Redis did during the run (with `--redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Usage>,
}

/// Runs the scenario (and the baseline comparison, when asked) and prints the report.
pub async fn run(args: &PairingArgs) -> Outcome {
    let target = args.common.target();
    let Some(baseline) = args.common.baseline() else {
        return report::emit(args.common.json, &measure(args, target).await);
    };
    // The baseline first, as in the first round of `relay`.
    let baseline = measure(args, baseline).await;
    let target = measure(args, target).await;
    report::emit_comparison(args.common.json, "pairing", &target, &baseline, &RATIOS)
}

/// Runs the scenario once against `subject`.
pub async fn measure(args: &PairingArgs, subject: Subject<'_>) -> PairingReport {
    let mut total = WorkerStats::new();
    let meter = redis::start(subject.redis, |e| total.error(e)).await;
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let run_id: u32 = rand::random();
    let started = Instant::now();
    // Each worker runs its share of the total rate.
    let period = (args.rate > 0)
        .then(|| Duration::from_secs_f64(f64::from(args.concurrency) / args.rate as f64));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let numbering = Numbering {
                first: u64::from(worker),
                stride: u64::from(args.concurrency),
            };
            let prefix = format!("lg{run_id:08x}w{worker}");
            let service = subject.service.clone();
            tokio::spawn(run_worker(service, numbering, prefix, deadline, period))
        })
        .collect();

    for worker in workers {
        match worker.await {
            Ok(stats) => total.merge(stats),
            Err(join) => total.error(format!("worker_panicked: {join}")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let redis = redis::stop(meter, PER_PAIRING, total.pairings, |e| total.error(e)).await;
    PairingReport {
        scenario: "pairing",
        label: subject.label.to_owned(),
        url: subject.service.to_string(),
        concurrency: args.concurrency,
        rate: args.rate,
        duration_s: elapsed,
        pairings: total.pairings,
        pairings_per_sec: total.pairings as f64 / elapsed,
        errors: total.errors.values().sum(),
        error_kinds: total.errors,
        first_transport_error: total.first_transport_error,
        latency: Step::ALL
            .iter()
            .map(|s| (s.name(), total.latency[*s as usize].summary()))
            .collect(),
        redis,
    }
}

/// The pairing numbers one worker uses, `first`, `first + stride`, ...: with one worker per
/// residue, every pairing of a run has its own number, and consecutive numbers start on
/// consecutive nodes.
#[derive(Debug, Clone, Copy)]
struct Numbering {
    first: u64,
    stride: u64,
}

impl Numbering {
    /// The number of this worker's `n`th pairing, from 0.
    fn nth(self, n: u64) -> u64 {
        self.first.wrapping_add(n.wrapping_mul(self.stride))
    }
}

async fn run_worker(
    service: Service,
    numbering: Numbering,
    prefix: String,
    deadline: Instant,
    period: Option<Duration>,
) -> WorkerStats {
    let mut clients: Vec<Client> = service.nodes().iter().cloned().map(Client::new).collect();
    let mut stats = WorkerStats::new();
    let mut ticker = period.map(|period| {
        // Spread the workers' ticks over one period so they do not all start at once.
        let offset = period.mul_f64(rand::random::<f64>());
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker
    });
    let mut n = 0u64;
    while Instant::now() < deadline {
        if let Some(ticker) = &mut ticker {
            ticker.tick().await;
            if Instant::now() >= deadline {
                break;
            }
        }
        let pairing = Pairing {
            service: &service,
            number: numbering.nth(n),
            ids: format!("{prefix}n{n}"),
        };
        n += 1;
        match pairing.run(&mut clients, &mut stats.latency).await {
            Ok(()) => stats.pairings += 1,
            Err(failure) => {
                stats.error(failure.to_string());
                if let Failure::Transport { source, .. } = failure {
                    stats
                        .first_transport_error
                        .get_or_insert_with(|| source.to_string());
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
    stats
}

#[derive(Deserialize)]
struct Created {
    joinid: String,
}

#[derive(Deserialize)]
struct Accepted {
    roomid: String,
}

/// One pairing: its number, which chooses the node of each step, and the text its fresh client
/// ids are derived from.
struct Pairing<'a> {
    service: &'a Service,
    number: u64,
    ids: String,
}

impl Pairing<'_> {
    /// The four steps, each on its node; `clients` holds one connection per node of the service.
    async fn run(&self, clients: &mut [Client], latency: &mut [Latency; 4]) -> Result<(), Failure> {
        let client1 = format!("{}a", self.ids);
        let client2 = format!("{}b", self.ids);

        let create = json!({ "client1": client1, "expiresInSeconds": EXPIRES_IN_SECONDS });
        let body = self
            .request(clients, latency, Step::Create, "/api/rooms", create, 201)
            .await?;
        let joinid = parse::<Created>(&body, Step::Create)?.joinid;

        let check = json!({ "joinid": joinid, "client1": client1 });
        let path = "/api/rooms/check";
        self.request(
            clients,
            latency,
            Step::CheckPending,
            path,
            check.clone(),
            204,
        )
        .await?;

        let accept = json!({ "joinid": joinid, "client2": client2 });
        let body = self
            .request(
                clients,
                latency,
                Step::Accept,
                "/api/rooms/accept",
                accept,
                200,
            )
            .await?;
        let roomid = parse::<Accepted>(&body, Step::Accept)?.roomid;

        let body = self
            .request(clients, latency, Step::CheckAccepted, path, check, 200)
            .await?;
        if parse::<Accepted>(&body, Step::CheckAccepted)?.roomid != roomid {
            return Err(Failure::Body {
                step: Step::CheckAccepted,
            });
        }
        Ok(())
    }

    /// Sends one step to its node and checks the status.
    async fn request(
        &self,
        clients: &mut [Client],
        latency: &mut [Latency; 4],
        step: Step,
        path: &str,
        body: serde_json::Value,
        expected: u16,
    ) -> Result<bytes::Bytes, Failure> {
        let client = &mut clients[self.service.step_node(self.number, step as usize)];
        let sent = Instant::now();
        let response = client
            .post_json(path, body.to_string())
            .await
            .map_err(|source| Failure::Transport { step, source })?;
        latency[step as usize].record(sent.elapsed());
        if response.status.as_u16() != expected {
            return Err(Failure::Status {
                step,
                status: response.status.as_u16(),
            });
        }
        Ok(response.body)
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], step: Step) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|_| Failure::Body { step })
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            pairings: 0,
            latency: Default::default(),
            errors: BTreeMap::new(),
            first_transport_error: None,
        }
    }

    /// Counts one error of kind `kind`.
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: WorkerStats) {
        self.pairings += other.pairings;
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.merge(theirs);
        }
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error;
        }
    }
}

impl Report for PairingReport {
    fn clean(&self) -> bool {
        self.errors == 0 && self.pairings > 0
    }

    fn table(&self) -> String {
        let report = self;
        let mut out = format!(
            "pairing [{}] {}: concurrency {}, rate {}, {:.1} s\n  pairings {}  ({:.0}/s)  errors {}\n",
            report.label,
            report.url,
            report.concurrency,
            if report.rate == 0 {
                "flat out".to_owned()
            } else {
                format!("{}/s", report.rate)
            },
            report.duration_s,
            report.pairings,
            report.pairings_per_sec,
            report.errors
        );
        out += &report::latency_table(report.latency.iter().map(|(name, s)| (*name, s)));
        if let Some(redis) = &report.redis {
            out += &redis.line();
        }
        for (kind, count) in &report.error_kinds {
            out += &format!("  error {kind}: {count}\n");
        }
        if let Some(error) = &report.first_transport_error {
            out += &format!("  first transport error: {error}\n");
        }
        out
    }
}
