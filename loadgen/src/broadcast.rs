//! `broadcast`: rooms of several WebSocket clients in which one member sends and all the others
//! read.
//!
//! Member 0 of every room (its first joiner, who creates it with `capacity` M) sends offers and
//! candidates without `to`, each carrying a [`Mark`] (room, side 0, sequence number, send time);
//! the server relays every message to the M−1 other members. Each receiver checks, as in `relay`,
//! that a message came through the right room from the room's sender, in order and once, and
//! records its end-to-end latency. Every (sender, receiver) pair is a [`Lane`]; the sender keeps
//! at most `--window` messages in flight relative to its slowest receiver, so flat-out runs
//! measure fan-out throughput rather than queue growth. With several nodes, member i of every room
//! is on node i mod n.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::Common;
use crate::compare::{self, Subject};
use crate::payload::{Mark, Script};
use crate::redis::{self, Usage};
use crate::relay::{self, Counts, Expect, Lane, PER_MESSAGE, Run};
use crate::report::{self, Outcome, Report};
use crate::stats::Summary;
use crate::ws::{self, Member, SourceAddrs, Ws};

/// Connections set up at once (whole rooms of them): as many as `relay` opens, 64 rooms of two.
const SETUP_CONNECTIONS: u32 = 128;

/// Clients one run may hold, as `relay` at its largest (9,000 rooms of two): under the usual
/// 20,000 descriptors per process, with room to spare.
const MAX_CLIENTS: u32 = 18_000;

/// The only sending member of every room.
const SENDER_SIDE: u8 = 0;

/// Options of the `broadcast` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms, each with one sender (rooms × members is at most 18,000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=6_000))]
    pub rooms: u32,
    /// Clients per room: one sender and members − 1 receivers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(3..=32))]
    pub members: u32,
    /// Messages per second sent in total over all senders (each is received members − 1 times);
    /// 0 sends as fast as the window allows.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Force every message to about this many bytes (e.g. 200 or 2048); default: realistic mix of
    /// 2–6 KiB SDP and ~200-byte candidates.
    #[arg(long, value_parser = clap::value_parser!(u64).range(150..=60_000))]
    pub size: Option<u64>,
    /// Messages a sender may have sent that its slowest receiver has not yet received.
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

impl BroadcastArgs {
    /// The clients a run opens, if that is within [`MAX_CLIENTS`].
    pub fn clients(&self) -> Result<u32, String> {
        match self.rooms.checked_mul(self.members) {
            Some(clients) if clients <= MAX_CLIENTS => Ok(clients),
            _ => Err(format!(
                "{} rooms of {} members would open more than {MAX_CLIENTS} connections",
                self.rooms, self.members
            )),
        }
    }
}

/// Results of one broadcast run.
#[derive(Debug, Serialize)]
pub struct BroadcastReport {
    pub scenario: &'static str,
    pub label: String,
    pub url: String,
    pub rooms: u32,
    pub rooms_ready: u32,
    /// Clients per room: one sender, `members - 1` receivers.
    pub members: u32,
    pub rate: u64,
    /// `null` for the realistic mix.
    pub size: Option<u64>,
    pub window: u64,
    /// Seconds from the first send to the last receipt.
    pub duration_s: f64,
    pub message_bytes_avg: f64,
    /// Messages the senders sent.
    pub sent: u64,
    /// Receipts: each message sent should be received `members - 1` times.
    pub delivered: u64,
    pub delivered_per_sec: f64,
    /// Receipts missing even after the grace period: `sent × (members − 1) − delivered`.
    pub lost: u64,
    /// Received in the wrong room, from the wrong client, without a mark, or by a sender.
    pub misrouted: u64,
    /// Received again: a sequence number the same receiver had already received.
    pub duplicated: u64,
    /// Received for the first time, but after a higher sequence number.
    pub reordered: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// End-to-end latency, send to receipt, over every receipt.
    pub latency: Summary,
    /// What the target's Redis did while the messages flowed (with `--redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Usage>,
    /// Throughput of every round, when the median of several is reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivered_per_sec_rounds: Vec<f64>,
}

/// Runs the scenario (and the baseline comparison, when asked) and prints the report.
pub async fn run(args: &BroadcastArgs) -> Outcome {
    if let Err(e) = args.clients() {
        eprintln!("loadgen broadcast: {e}");
        return Outcome::Failed;
    }
    let target = args.common.target();
    let Some(baseline) = args.common.baseline() else {
        return report::emit(args.common.json, &measure(args, target).await);
    };
    let (targets, baselines) =
        compare::alternate(args.rounds, target, baseline, |who| measure(args, who)).await;
    let (baseline, target) = (median(baselines), median(targets));
    report::emit_comparison(
        args.common.json,
        "broadcast",
        &target,
        &baseline,
        &relay::RATIOS,
    )
}

/// The run with the median throughput, carrying every run's throughput; any run that was not
/// clean makes the median not clean either, so no failure is hidden by the choice.
fn median(mut runs: Vec<BroadcastReport>) -> BroadcastReport {
    runs.sort_by(|a, b| a.delivered_per_sec.total_cmp(&b.delivered_per_sec));
    let rounds: Vec<f64> = runs.iter().map(|r| r.delivered_per_sec).collect();
    let worst = |field: fn(&BroadcastReport) -> u64| runs.iter().map(field).max().unwrap_or(0);
    let (lost, misrouted, duplicated, reordered, errors) = (
        worst(|r| r.lost),
        worst(|r| r.misrouted),
        worst(|r| r.duplicated),
        worst(|r| r.reordered),
        worst(|r| r.errors),
    );
    let rooms_ready = runs.iter().map(|r| r.rooms_ready).min().unwrap_or(0);
    let error_kinds = relay::worst_kinds(runs.iter().map(|r| &r.error_kinds));
    let mut middle = runs.swap_remove(runs.len() / 2);
    if rounds.len() > 1 {
        middle.delivered_per_sec_rounds = rounds;
    }
    middle.lost = lost;
    middle.misrouted = misrouted;
    middle.duplicated = duplicated;
    middle.reordered = reordered;
    middle.errors = errors;
    middle.rooms_ready = rooms_ready;
    middle.error_kinds = error_kinds;
    middle
}

/// How far a sender that sent `sent` messages is ahead of its slowest receiver.
fn lead(sent: u64, received: impl IntoIterator<Item = u64>) -> u64 {
    received
        .into_iter()
        .map(|r| sent.saturating_sub(r))
        .max()
        .unwrap_or(0)
}

/// Receipts missing when a sender sent `sent` messages and its receivers got `received`:
/// `sent × receivers − delivered`, except that a receiver that somehow counted more than was sent
/// does not make up for another's losses (duplicates are not counted as received at all).
fn lost(sent: u64, received: impl IntoIterator<Item = u64>) -> u64 {
    received.into_iter().map(|r| sent.saturating_sub(r)).sum()
}

/// A room's sender and its lanes to every receiver.
struct Fanout {
    /// Messages the sender sent; every lane's `sent` follows it.
    sent: AtomicU64,
    lanes: Vec<Arc<Lane>>,
}

impl Fanout {
    fn new(receivers: u32) -> Fanout {
        Fanout {
            sent: AtomicU64::new(0),
            lanes: (0..receivers).map(|_| Arc::new(Lane::default())).collect(),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    fn received(&self) -> impl Iterator<Item = u64> + '_ {
        self.lanes
            .iter()
            .map(|lane| lane.received.load(Ordering::Acquire))
    }

    /// Counts a message as sent to every receiver (before it is sent: a receiver may get it before
    /// `send` returns).
    fn count_send(&self) {
        self.sent.fetch_add(1, Ordering::AcqRel);
        for lane in &self.lanes {
            lane.sent.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn lead(&self) -> u64 {
        lead(self.sent(), self.received())
    }

    /// The lane of the receiver that has received least; the sender waits on it.
    fn slowest(&self) -> Option<&Lane> {
        self.lanes
            .iter()
            .min_by_key(|lane| lane.received.load(Ordering::Acquire))
            .map(|lane| &**lane)
    }

    fn lost(&self) -> u64 {
        lost(self.sent(), self.received())
    }

    fn in_flight(&self) -> bool {
        self.lanes.iter().any(|lane| lane.in_flight() > 0)
    }
}

/// Runs the scenario once against `subject`.
pub async fn measure(args: &BroadcastArgs, subject: Subject<'_>) -> BroadcastReport {
    let run = Arc::new(Run::new());
    let rooms = set_up_rooms(args, subject, &run.counts).await;
    let rooms_ready = rooms.len() as u32;
    let meter = redis::start(subject.redis, |e| run.counts.error(e)).await;

    let script = Arc::new(Script::new(SENDER_SIDE, args.size.map(|s| s as usize)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start_ns = run.now_ns();
    let send_until = Instant::now() + Duration::from_secs(args.duration);
    // Each sender sends its share of the total rate.
    let period = (args.rate > 0)
        .then(|| Duration::from_secs_f64(f64::from(rooms_ready.max(1)) / args.rate as f64));

    let mut fanouts = Vec::new();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    let mut receiver_sinks = Vec::new();
    for (room_index, room_name, members) in rooms {
        let mut members = members.into_iter();
        let Some(sender) = members.next() else {
            continue;
        };
        let fanout = Arc::new(Fanout::new(args.members - 1));
        for (member, lane) in members.zip(&fanout.lanes) {
            let (sink, stream) = member.ws.split();
            receiver_sinks.push(sink);
            let expect = Expect {
                room_index,
                room_name: room_name.clone(),
                peer_side: SENDER_SIDE,
                peer_id: sender.client_id.clone(),
            };
            readers.push(tokio::spawn(relay::read_all(
                run.clone(),
                lane.clone(),
                expect,
                stream,
                stop_rx.clone(),
            )));
        }
        // The sender reads too: to answer pings and to count errors and disconnections. Nothing
        // should be relayed to it, so its expected peer is nobody and anything relayed is misrouted.
        let (sink, stream) = sender.ws.split();
        let nobody = Expect {
            room_index,
            room_name,
            peer_side: SENDER_SIDE,
            peer_id: String::new(),
        };
        readers.push(tokio::spawn(relay::read_all(
            run.clone(),
            Arc::new(Lane::default()),
            nobody,
            stream,
            stop_rx.clone(),
        )));
        let sender = Sender {
            run: run.clone(),
            fanout: fanout.clone(),
            script: script.clone(),
            room_index,
            window: args.window,
            period,
            send_until,
        };
        writers.push(tokio::spawn(sender.send_all(sink)));
        fanouts.push(fanout);
    }

    let mut sinks = receiver_sinks;
    for writer in writers {
        match writer.await {
            Ok(sink) => sinks.push(sink),
            Err(e) => run.counts.error(format!("writer_panicked: {e}")),
        }
    }
    // Give in-flight messages the grace period to arrive.
    let grace_until = Instant::now() + Duration::from_secs(args.grace);
    while Instant::now() < grace_until && fanouts.iter().any(|f| f.in_flight()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for reader in readers {
        if let Err(e) = reader.await {
            run.counts.error(format!("reader_panicked: {e}"));
        }
    }
    let delivered: u64 = fanouts.iter().flat_map(|f| f.received()).sum();
    let redis = redis::stop(meter, PER_MESSAGE, delivered, |e| run.counts.error(e)).await;
    relay::close_all(sinks).await;

    let sent: u64 = fanouts.iter().map(|f| f.sent()).sum();
    let lost: u64 = fanouts.iter().map(|f| f.lost()).sum();
    let last_ns = run
        .counts
        .last_receipt_ns
        .load(Ordering::Acquire)
        .max(start_ns + 1);
    let duration_s = (last_ns - start_ns) as f64 / 1e9;
    let error_kinds = run.counts.take_errors();
    BroadcastReport {
        scenario: "broadcast",
        label: subject.label.to_owned(),
        url: subject.service.to_string(),
        rooms: args.rooms,
        rooms_ready,
        members: args.members,
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
    args: &BroadcastArgs,
    subject: Subject<'_>,
    counts: &Counts,
) -> Vec<(u32, String, Vec<Member>)> {
    let sources = SourceAddrs::default();
    let run_id: u32 = rand::random();
    let config = WebSocketConfig::default();
    let parallel_rooms = (SETUP_CONNECTIONS / args.members).max(1) as usize;
    let results: Vec<_> = futures_util::stream::iter(0..args.rooms)
        .map(|index| {
            let (sources, name) = (&sources, format!("lg-{run_id:08x}-b{index}"));
            async move {
                let joined =
                    ws::join_group(subject.service, sources, &name, args.members, config).await;
                (index, name, joined)
            }
        })
        .buffer_unordered(parallel_rooms)
        .collect()
        .await;
    let mut rooms = Vec::with_capacity(results.len());
    for (index, name, joined) in results {
        match joined {
            Ok(members) => rooms.push((index, name, members)),
            Err(e) => counts.error(e.kind()),
        }
    }
    rooms
}

/// A room's sending member.
struct Sender {
    run: Arc<Run>,
    fanout: Arc<Fanout>,
    script: Arc<Script>,
    room_index: u32,
    window: u64,
    period: Option<Duration>,
    send_until: Instant,
}

impl Sender {
    /// Sends until `send_until`, respecting the rate and the window; returns the sink for closing.
    async fn send_all(self, mut sink: SplitSink<Ws, Message>) -> SplitSink<Ws, Message> {
        let deadline = tokio::time::Instant::from_std(self.send_until);
        let mut ticker = self.period.map(|period| {
            // Spread the senders' ticks over one period so they do not all send at once.
            let offset = period.mul_f64(rand::random::<f64>());
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            ticker
        });
        let mut seq = 0u64;
        'sending: loop {
            if let Some(ticker) = &mut ticker {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            while self.fanout.lead() >= self.window {
                let Some(slowest) = self.fanout.slowest() else {
                    break;
                };
                let progress = slowest.progress.notified();
                // Checked again once the waiter exists, so a receipt in between is not missed.
                if self.fanout.lead() < self.window {
                    break;
                }
                tokio::select! {
                    _ = progress => {}
                    _ = tokio::time::sleep_until(deadline) => break 'sending,
                }
            }
            if Instant::now() >= self.send_until {
                break;
            }
            let mark = Mark {
                room: self.room_index,
                side: SENDER_SIDE,
                seq,
                sent_ns: self.run.now_ns(),
            };
            let text = self.script.render(&mark);
            self.run
                .counts
                .bytes_sent
                .fetch_add(text.len() as u64, Ordering::Relaxed);
            self.fanout.count_send();
            if let Err(e) = sink.send(Message::text(text)).await {
                self.run.counts.error(format!("send_failed: {e}"));
                break;
            }
            seq += 1;
        }
        sink
    }
}

impl Report for BroadcastReport {
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
            format!("{} msg/s sent", self.rate)
        };
        let mut out = format!(
            "broadcast [{}] {}: {} rooms × {} members ({} ready), {rate}, {size} (avg {:.0} B), window {}, {:.1} s\n  \
             sent {}  delivered {}  ({:.0}/s)  lost {}  misrouted {}  duplicated {}  reordered {}  \
             errors {}\n",
            self.label,
            self.url,
            self.rooms,
            self.members,
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
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> Result<BroadcastArgs, clap::Error> {
        let args = ["loadgen", "broadcast", "--url", "http://127.0.0.1:1"]
            .iter()
            .chain(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Broadcast(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_ten_rooms_of_eight() {
        let args = parse(&[]).expect("defaults parse");
        assert_eq!((args.rooms, args.members, args.window), (10, 8, 8));
        assert_eq!((args.rate, args.size, args.rounds), (0, None, 1));
        assert_eq!(args.clients(), Ok(80));
    }

    #[test]
    fn members_are_three_to_thirty_two() {
        for members in ["3", "32"] {
            let args = parse(&["--members", members]).expect(members);
            assert_eq!(args.members.to_string(), members);
        }
        for members in ["0", "1", "2", "33", "1000"] {
            assert!(parse(&["--members", members]).is_err(), "{members}");
        }
    }

    #[test]
    fn unbounded_runs_are_rejected() {
        for extra in [
            &["--rooms", "0"][..],
            &["--rooms", "6001"],
            &["--duration", "0"],
            &["--window", "0"],
            &["--size", "100000"],
            &["--rounds", "0"],
            &["--grace", "61"],
            &["--baseline-url", "http://192.168.0.1:80"],
        ] {
            assert!(parse(extra).is_err(), "{extra:?}");
        }
        let args = parse(&["--rooms", "2000", "--members", "9"]).expect("parses");
        assert_eq!(args.clients(), Ok(18_000));
        let args = parse(&["--rooms", "6000", "--members", "32"]).expect("parses");
        assert!(args.clients().is_err());
    }

    #[test]
    fn the_window_follows_the_slowest_receiver() {
        assert_eq!(lead(10, [10, 10, 10]), 0);
        assert_eq!(lead(10, [10, 7, 9]), 3);
        assert_eq!(lead(10, [2, 10, 10]), 8);
        // A receiver that somehow got more than was sent does not hide a slow one.
        assert_eq!(lead(10, [12, 6]), 4);
        assert_eq!(lead(5, []), 0);

        let fanout = Fanout::new(3);
        for _ in 0..4 {
            fanout.count_send();
        }
        assert_eq!(fanout.lead(), 4);
        fanout.lanes[0].received.store(4, Ordering::Release);
        fanout.lanes[2].received.store(3, Ordering::Release);
        fanout.lanes[1].received.store(1, Ordering::Release);
        assert_eq!(fanout.lead(), 3);
        let slowest = fanout.slowest().expect("has receivers");
        assert!(std::ptr::eq(slowest, &*fanout.lanes[1]));
        assert_eq!(fanout.lanes[1].in_flight(), 3);
    }

    #[test]
    fn lost_is_sent_times_receivers_minus_delivered() {
        // 7 members: 6 receivers of 100 messages each.
        let received = [100, 100, 99, 100, 97, 100];
        let delivered: u64 = received.iter().sum();
        assert_eq!(lost(100, received), 100 * 6 - delivered);
        assert_eq!(lost(100, received), 4);
        assert_eq!(lost(100, [100; 6]), 0);
        assert_eq!(lost(0, [0; 6]), 0);
        // A duplicate at one receiver does not cancel a loss at another.
        assert_eq!(lost(100, [101, 99]), 1);

        let fanout = Fanout::new(2);
        for _ in 0..5 {
            fanout.count_send();
        }
        fanout.lanes[0].received.store(5, Ordering::Release);
        fanout.lanes[1].received.store(2, Ordering::Release);
        assert_eq!((fanout.sent(), fanout.lost()), (5, 3));
        assert!(fanout.in_flight());
        fanout.lanes[1].received.store(5, Ordering::Release);
        assert!(!fanout.in_flight());
        assert_eq!(fanout.lost(), 0);
    }

    fn report(delivered_per_sec: f64, lost: u64) -> BroadcastReport {
        BroadcastReport {
            scenario: "broadcast",
            label: "x".into(),
            url: "http://127.0.0.1:1".into(),
            rooms: 3,
            rooms_ready: 3,
            members: 8,
            rate: 0,
            size: None,
            window: 4,
            duration_s: 1.0,
            message_bytes_avg: 200.0,
            sent: 10,
            delivered: 70 - lost,
            delivered_per_sec,
            lost,
            misrouted: 0,
            duplicated: 0,
            reordered: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            latency: Summary::default(),
            redis: None,
            delivered_per_sec_rounds: Vec::new(),
        }
    }

    #[test]
    fn the_median_round_keeps_every_rounds_failures() {
        let runs = vec![report(300.0, 0), report(100.0, 2), report(200.0, 0)];
        let median = median(runs);
        assert_eq!(median.delivered_per_sec, 200.0);
        assert_eq!(median.delivered_per_sec_rounds, vec![100.0, 200.0, 300.0]);
        assert_eq!(median.lost, 2);
        assert!(!median.clean());
        assert!(report(1.0, 0).clean());
    }
}
