//! `relay`: rooms of two WebSocket clients exchanging offers, answers and candidates.
//!
//! Each client has a writer task and a reader task. Every message carries a [`Mark`] (room, side,
//! sequence number, send time); the peer's reader checks that it came through the right room from
//! the right client, in order and once, and records its end-to-end latency. A bounded window of
//! messages in flight per sender keeps flat-out runs measuring throughput rather than queue growth
//! (a server disconnects readers whose outbound queue fills). With several nodes, the two members
//! of every room are on different nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::Common;
use crate::compare::{self, Subject};
use crate::payload::{Mark, Script};
use crate::redis::{self, Usage};
use crate::report::{self, Outcome, Report};
use crate::sequence::{Receipt, Receipts};
use crate::stats::{Latency, Summary};
use crate::ws::{self, Member, ServerMessage, SourceAddrs, Ws};

/// Rooms set up at once: enough to set up 1,000 rooms in a few seconds, few enough not to look like
/// a connection flood that the server's accept loop has to queue.
const SETUP_PARALLELISM: usize = 64;

/// Latency histograms shared by all readers, so thousands of readers do not each hold one.
const LATENCY_SHARDS: usize = 16;

/// Latencies a reader collects before taking a shard's lock.
const LATENCY_BATCH: usize = 256;

/// How long closing frames may take once the run is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of the `relay` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms of two clients.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=9_000))]
    pub rooms: u32,
    /// Messages per second in total over all clients; 0 sends as fast as the window allows.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Force every message to about this many bytes (e.g. 200 or 2048); default: realistic mix of
    /// 2–6 KiB SDP and ~200-byte candidates.
    #[arg(long, value_parser = clap::value_parser!(u64).range(150..=60_000))]
    pub size: Option<u64>,
    /// Messages a client may have sent that its peer has not yet received.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub window: u64,
    /// With --baseline-url: run both this many times, alternating which goes first, and report
    /// each one's median run by throughput, so a busy spell on the machine hits both alike.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Seconds to wait, after sending stops, for messages still in flight.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub grace: u64,
}

/// Results of one relay run.
#[derive(Debug, Serialize)]
pub struct RelayReport {
    pub scenario: &'static str,
    pub label: String,
    pub url: String,
    pub rooms: u32,
    pub rooms_ready: u32,
    pub rate: u64,
    /// `null` for the realistic mix.
    pub size: Option<u64>,
    pub window: u64,
    /// Seconds from the first send to the last receipt.
    pub duration_s: f64,
    pub message_bytes_avg: f64,
    pub sent: u64,
    pub delivered: u64,
    pub delivered_per_sec: f64,
    /// Sent but never received, even after the grace period.
    pub lost: u64,
    /// Received in the wrong room, from the wrong client, or without a mark.
    pub misrouted: u64,
    /// Received again: a sequence number the same reader had already received.
    pub duplicated: u64,
    /// Received for the first time, but after a higher sequence number.
    pub reordered: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// End-to-end latency, send to receipt.
    pub latency: Summary,
    /// What the target's Redis did while the messages flowed (with `--redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Usage>,
    /// Throughput of every round, when the median of several is reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivered_per_sec_rounds: Vec<f64>,
}

/// The fields compared with the baseline, as `signalpost / baseline` ratios.
pub(crate) const RATIOS: [&str; 4] = [
    "delivered_per_sec",
    "latency/p50_us",
    "latency/p99_us",
    "latency/p999_us",
];

/// What one operation is, for the Redis numbers of `relay` and `broadcast`.
pub(crate) const PER_MESSAGE: &str = "message delivered";

/// Runs the scenario (and the baseline comparison, when asked) and prints the report.
pub async fn run(args: &RelayArgs) -> Outcome {
    let target = args.common.target();
    let Some(baseline) = args.common.baseline() else {
        return report::emit(args.common.json, &measure(args, target).await);
    };
    let (targets, baselines) =
        compare::alternate(args.rounds, target, baseline, |who| measure(args, who)).await;
    let (baseline, target) = (median(baselines), median(targets));
    report::emit_comparison(args.common.json, "relay", &target, &baseline, &RATIOS)
}

/// The run with the median throughput, carrying every run's throughput; any run that was not
/// clean makes the median not clean either, so no failure is hidden by the choice.
fn median(mut runs: Vec<RelayReport>) -> RelayReport {
    runs.sort_by(|a, b| a.delivered_per_sec.total_cmp(&b.delivered_per_sec));
    let rounds: Vec<f64> = runs.iter().map(|r| r.delivered_per_sec).collect();
    let worst = |field: fn(&RelayReport) -> u64| runs.iter().map(field).max().unwrap_or(0);
    let (lost, misrouted, duplicated, reordered, errors) = (
        worst(|r| r.lost),
        worst(|r| r.misrouted),
        worst(|r| r.duplicated),
        worst(|r| r.reordered),
        worst(|r| r.errors),
    );
    let error_kinds = worst_kinds(runs.iter().map(|r| &r.error_kinds));
    let mut middle = runs.swap_remove(runs.len() / 2);
    if rounds.len() > 1 {
        middle.delivered_per_sec_rounds = rounds;
    }
    middle.lost = lost;
    middle.misrouted = misrouted;
    middle.duplicated = duplicated;
    middle.reordered = reordered;
    middle.errors = errors;
    middle.error_kinds = error_kinds;
    middle
}

/// Every error kind counted in any round, each with its largest count in one round, so that the
/// median round's report also names what went wrong in the others.
pub(crate) fn worst_kinds<'a>(
    rounds: impl IntoIterator<Item = &'a BTreeMap<String, u64>>,
) -> BTreeMap<String, u64> {
    let mut worst = BTreeMap::new();
    for kinds in rounds {
        for (kind, count) in kinds {
            let entry = worst.entry(kind.clone()).or_insert(0);
            *entry = (*entry).max(*count);
        }
    }
    worst
}

/// One direction of a room: what its sender has sent and its receiver has received.
#[derive(Default)]
pub(crate) struct Lane {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Wakes the sender when its window opens.
    pub(crate) progress: Notify,
}

impl Lane {
    pub(crate) fn in_flight(&self) -> u64 {
        self.sent
            .load(Ordering::Acquire)
            .saturating_sub(self.received.load(Ordering::Acquire))
    }
}

/// Everything a client's reader checks a message against.
pub(crate) struct Expect {
    pub(crate) room_index: u32,
    pub(crate) room_name: String,
    pub(crate) peer_side: u8,
    pub(crate) peer_id: String,
}

/// Counters every task adds to.
#[derive(Default)]
pub(crate) struct Counts {
    errors: Mutex<BTreeMap<String, u64>>,
    pub(crate) misrouted: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) last_receipt_ns: AtomicU64,
}

impl Counts {
    pub(crate) fn error(&self, kind: impl Into<String>) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind.into())
            .or_default() += 1;
    }

    /// The errors counted so far, by kind, leaving none behind.
    pub(crate) fn take_errors(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// State shared by all clients of one run.
pub(crate) struct Run {
    epoch: Instant,
    pub(crate) counts: Counts,
    latency: Vec<Mutex<Latency>>,
}

impl Run {
    pub(crate) fn new() -> Run {
        Run {
            epoch: Instant::now(),
            counts: Counts::default(),
            latency: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(Latency::new()))
                .collect(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Every reader's latencies together.
    pub(crate) fn latency_summary(&self) -> Summary {
        let mut latency = Latency::new();
        for shard in &self.latency {
            latency.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        latency.summary()
    }
}

/// Runs the scenario once against `subject`.
pub async fn measure(args: &RelayArgs, subject: Subject<'_>) -> RelayReport {
    let run = Arc::new(Run::new());
    let rooms = set_up_rooms(args, subject, &run.counts).await;
    let rooms_ready = rooms.len() as u32;
    let meter = redis::start(subject.redis, |e| run.counts.error(e)).await;

    let size = args.size.map(|s| s as usize);
    let scripts = Arc::new([Script::new(0, size), Script::new(1, size)]);
    let (stop_tx, stop_rx) = watch::channel(false);
    let start_ns = run.now_ns();
    let send_until = Instant::now() + Duration::from_secs(args.duration);
    // Each client sends its share of the total rate.
    let period = (args.rate > 0)
        .then(|| Duration::from_secs_f64(2.0 * f64::from(rooms_ready.max(1)) / args.rate as f64));

    let mut lanes = Vec::new();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (room_index, room_name, members) in rooms {
        let room_lanes = [Arc::new(Lane::default()), Arc::new(Lane::default())];
        let ids = [members[0].client_id.clone(), members[1].client_id.clone()];
        for (side, member) in members.into_iter().enumerate() {
            let (sink, stream) = member.ws.split();
            let expect = Expect {
                room_index,
                room_name: room_name.clone(),
                peer_side: 1 - side as u8,
                peer_id: ids[1 - side].clone(),
            };
            let sender = Sender {
                run: run.clone(),
                lane: room_lanes[side].clone(),
                script: scripts.clone(),
                room_index,
                side: side as u8,
                window: args.window,
                period,
                send_until,
            };
            writers.push(tokio::spawn(sender.send_all(sink)));
            readers.push(tokio::spawn(read_all(
                run.clone(),
                room_lanes[1 - side].clone(),
                expect,
                stream,
                stop_rx.clone(),
            )));
        }
        lanes.extend(room_lanes);
    }

    let mut sinks = Vec::new();
    for writer in writers {
        match writer.await {
            Ok(sink) => sinks.push(sink),
            Err(e) => run.counts.error(format!("writer_panicked: {e}")),
        }
    }
    // Give in-flight messages the grace period to arrive.
    let grace_until = Instant::now() + Duration::from_secs(args.grace);
    while Instant::now() < grace_until && lanes.iter().any(|lane| lane.in_flight() > 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for reader in readers {
        if let Err(e) = reader.await {
            run.counts.error(format!("reader_panicked: {e}"));
        }
    }
    let delivered: u64 = lanes
        .iter()
        .map(|l| l.received.load(Ordering::Acquire))
        .sum();
    let redis = redis::stop(meter, PER_MESSAGE, delivered, |e| run.counts.error(e)).await;
    close_all(sinks).await;

    let sent: u64 = lanes.iter().map(|l| l.sent.load(Ordering::Acquire)).sum();
    let lost: u64 = lanes.iter().map(|l| l.in_flight()).sum();
    let last_ns = run
        .counts
        .last_receipt_ns
        .load(Ordering::Acquire)
        .max(start_ns + 1);
    let duration_s = (last_ns - start_ns) as f64 / 1e9;
    let error_kinds = run.counts.take_errors();
    RelayReport {
        scenario: "relay",
        label: subject.label.to_owned(),
        url: subject.service.to_string(),
        rooms: args.rooms,
        rooms_ready,
        rate: args.rate,
        size: args.size,
        window: args.window,
        duration_s,
        message_bytes_avg: run.counts.bytes_sent.load(Ordering::Acquire) as f64
            / sent.max(1) as f64,
        sent,
        delivered,
        delivered_per_sec: delivered as f64 / duration_s,
        lost,
        misrouted: run.counts.misrouted.load(Ordering::Acquire),
        duplicated: run.counts.duplicated.load(Ordering::Acquire),
        reordered: run.counts.reordered.load(Ordering::Acquire),
        errors: error_kinds.values().sum(),
        error_kinds,
        latency: run.latency_summary(),
        redis,
        delivered_per_sec_rounds: Vec::new(),
    }
}

/// Connects and joins every room, a few at a time; failures are counted and the room skipped.
async fn set_up_rooms(
    args: &RelayArgs,
    subject: Subject<'_>,
    counts: &Counts,
) -> Vec<(u32, String, [Member; 2])> {
    let sources = SourceAddrs::default();
    let run_id: u32 = rand::random();
    let config = WebSocketConfig::default();
    let results: Vec<_> = futures_util::stream::iter(0..args.rooms)
        .map(|index| {
            let (sources, name) = (&sources, format!("lg-{run_id:08x}-{index}"));
            async move {
                let joined = ws::join_pair(subject.service, sources, &name, config).await;
                (index, name, joined)
            }
        })
        .buffer_unordered(SETUP_PARALLELISM)
        .collect()
        .await;
    let mut rooms = Vec::with_capacity(results.len());
    for (index, name, joined) in results {
        match joined {
            Ok((first, second)) => rooms.push((index, name, [first, second])),
            Err(e) => counts.error(e.kind()),
        }
    }
    rooms
}

/// One client's sending side.
struct Sender {
    run: Arc<Run>,
    lane: Arc<Lane>,
    script: Arc<[Script; 2]>,
    room_index: u32,
    side: u8,
    window: u64,
    period: Option<Duration>,
    send_until: Instant,
}

impl Sender {
    /// Sends until `send_until`, respecting the rate and the window; returns the sink for closing.
    async fn send_all(self, mut sink: SplitSink<Ws, Message>) -> SplitSink<Ws, Message> {
        let deadline = tokio::time::Instant::from_std(self.send_until);
        let mut ticker = self.period.map(|period| {
            // Spread the clients' ticks over one period so they do not all send at once.
            let offset = period.mul_f64(rand::random::<f64>());
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            ticker
        });
        let mut seq = 0u64;
        loop {
            if let Some(ticker) = &mut ticker {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            while self.lane.in_flight() >= self.window {
                let progress = self.lane.progress.notified();
                if self.lane.in_flight() < self.window {
                    break;
                }
                tokio::select! {
                    _ = progress => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if Instant::now() >= self.send_until {
                break;
            }
            let mark = Mark {
                room: self.room_index,
                side: self.side,
                seq,
                sent_ns: self.run.now_ns(),
            };
            let text = self.script[self.side as usize].render(&mark);
            self.run
                .counts
                .bytes_sent
                .fetch_add(text.len() as u64, Ordering::Relaxed);
            // Counted before sending: the peer may receive it before `send` returns.
            self.lane.sent.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = sink.send(Message::text(text)).await {
                self.run.counts.error(format!("send_failed: {e}"));
                break;
            }
            seq += 1;
        }
        sink
    }
}

/// One client's receiving side: checks and times every relayed message until told to stop.
pub(crate) async fn read_all(
    run: Arc<Run>,
    lane: Arc<Lane>,
    expect: Expect,
    mut stream: SplitStream<Ws>,
    mut stop: watch::Receiver<bool>,
) {
    let mut receipts = Receipts::default();
    let mut batch = Vec::with_capacity(LATENCY_BATCH);
    let shard = &run.latency[expect.room_index as usize % LATENCY_SHARDS];
    let flush = |batch: &mut Vec<u64>| {
        let mut latency = shard.lock().unwrap_or_else(|e| e.into_inner());
        for ns in batch.drain(..) {
            latency.record(Duration::from_nanos(ns));
        }
    };
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = stop.changed() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                run.counts.error("binary_message");
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                run.counts.error(format!(
                    "closed_by_server: {}",
                    frame.map_or("no frame".into(), |f| f.to_string())
                ));
                break;
            }
            Some(Ok(_)) => continue, // ping/pong, answered by tungstenite
            Some(Err(e)) => {
                run.counts.error(format!("read_failed: {e}"));
                break;
            }
            None => {
                run.counts.error("disconnected");
                break;
            }
        };
        let received_ns = run.now_ns();
        let Ok(parsed) = serde_json::from_str::<ServerMessage>(&text) else {
            run.counts.error("unparseable_message");
            continue;
        };
        match &*parsed.kind {
            "webrtc_offer" | "webrtc_answer" | "ice_candidate" => {}
            "error" => {
                run.counts.error(format!(
                    "server_error: {}",
                    parsed.error.as_deref().unwrap_or("?")
                ));
                continue;
            }
            "pong" => continue,
            other => {
                run.counts.error(format!("unexpected_{other}"));
                continue;
            }
        }
        // The sender counts a message before sending it, so a real mark's number is below `sent`.
        let routed = Mark::find(&text).filter(|mark| {
            mark.room == expect.room_index
                && mark.side == expect.peer_side
                && mark.seq < lane.sent.load(Ordering::Acquire)
                && parsed.room_id.as_deref() == Some(expect.room_name.as_str())
                && parsed.from.as_deref() == Some(expect.peer_id.as_str())
        });
        let Some(mark) = routed else {
            run.counts.misrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match receipts.record(mark.seq) {
            Receipt::New => {}
            Receipt::Late => {
                run.counts.reordered.fetch_add(1, Ordering::Relaxed);
            }
            // Not counted as received, so that it cannot make up for a lost message.
            Receipt::Duplicate => {
                run.counts.duplicated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        batch.push(received_ns.saturating_sub(mark.sent_ns));
        if batch.len() == LATENCY_BATCH {
            flush(&mut batch);
        }
        run.counts
            .last_receipt_ns
            .fetch_max(received_ns, Ordering::AcqRel);
        lane.received.fetch_add(1, Ordering::AcqRel);
        lane.progress.notify_one();
    }
    flush(&mut batch);
}

/// Sends close frames (best effort, bounded in time) so servers see orderly departures.
pub(crate) async fn close_all(sinks: Vec<SplitSink<Ws, Message>>) {
    let closing = futures_util::stream::iter(sinks).for_each_concurrent(
        SETUP_PARALLELISM,
        |mut sink| async move {
            let _ = sink.close().await;
        },
    );
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

impl Report for RelayReport {
    fn clean(&self) -> bool {
        self.errors == 0
            && self.lost == 0
            && self.misrouted == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.rooms_ready == self.rooms
            && self.delivered > 0
    }

    fn table(&self) -> String {
        let size = self.size.map_or("mixed".to_owned(), |s| format!("{s} B"));
        let rate = if self.rate == 0 {
            "flat out".to_owned()
        } else {
            format!("{} msg/s", self.rate)
        };
        let mut out = format!(
            "relay [{}] {}: {} rooms ({} ready), {rate}, {size} (avg {:.0} B), window {}, {:.1} s\n  \
             sent {}  delivered {}  ({:.0}/s)  lost {}  misrouted {}  duplicated {}  reordered {}  \
             errors {}\n",
            self.label,
            self.url,
            self.rooms,
            self.rooms_ready,
            self.message_bytes_avg,
            self.window,
            self.duration_s,
            self.sent,
            self.delivered,
            self.delivered_per_sec,
            self.lost,
            self.misrouted,
            self.duplicated,
            self.reordered,
            self.errors
        );
        out += &report::latency_table(std::iter::once(("end-to-end", &self.latency)));
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
    fn every_rounds_error_kinds_are_kept_at_their_worst() {
        let round = |kinds: &[(&str, u64)]| -> BTreeMap<String, u64> {
            kinds.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        let rounds = [
            round(&[("setup_timeout", 2)]),
            round(&[]),
            round(&[("setup_timeout", 1), ("disconnected", 3)]),
        ];
        assert_eq!(
            worst_kinds(&rounds),
            round(&[("disconnected", 3), ("setup_timeout", 2)])
        );
        assert!(worst_kinds(&[]).is_empty());
    }
}
