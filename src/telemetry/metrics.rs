//! Every Prometheus metric of the server, defined in this one place, behind a small typed API.
//!
//! Each [`Server`](crate::Server) owns its own [`Metrics`] with its own `prometheus-client`
//! [`Registry`]: nothing is process-global, so tests that run many servers in one process never
//! see each other's counts. Label values are closed enums created up front, which keeps the set
//! of series bounded whatever clients send, makes every series visible at 0 from the first scrape
//! (so `rate()` and `increase()` work from the start), and turns the hot-path updates into a
//! single atomic add without a label lookup.
//!
//! Gauges of live state (connections, rooms, process memory) are not kept up to date on every
//! change: [`Metrics::render`] sets them from a [`Live`] snapshot just before encoding.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::protocol::ws::RelayKind;

/// The `Content-Type` of [`Metrics::render`]'s text (OpenMetrics, which Prometheus scrapes
/// natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of the wait between creating a code and its acceptance, in seconds: people type a
/// code within seconds to minutes; the long tail (hours, a day) is codes sent by message.
const PAIRING_WAIT_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86_400.0,
];

/// Buckets of a room's lifetime in the hub, in seconds: a failed call setup ends within seconds,
/// a call lasts minutes to hours.
const ROOM_LIFETIME_BUCKETS: [f64; 11] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 86_400.0,
];

/// How a pairing request ended, or what became of a code.
///
/// `created`, `accepted` and `expired` count codes (a repeated accept by the same device is not a
/// second acceptance); the others count refused requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingOutcome {
    /// A code was created.
    Created,
    /// A code was accepted and its room created.
    Accepted,
    /// A create of a live code, or an accept of a code another device accepted.
    Conflict,
    /// An accept of a code that is not live.
    NotFound,
    /// A code expired without being accepted (counted when the sweeper removes it).
    Expired,
    /// A pairing request refused by a rate or guess limit.
    RateLimited,
}

impl PairingOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Accepted,
        Self::Conflict,
        Self::NotFound,
        Self::Expired,
        Self::RateLimited,
    ];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Accepted => "accepted",
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
            Self::Expired => "expired",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Why the server refused a message, a request or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A WebSocket frame or request body over its size limit.
    Oversize,
    /// Over a per-client or per-connection rate.
    Rate,
    /// A WebSocket from an origin not allowed.
    Origin,
    /// A client too slow to take its messages, disconnected.
    QueueFull,
    /// A join of a room that already has two members.
    RoomFull,
    /// A TCP connection beyond `MAX_CONNECTIONS`, closed at once.
    ConnectionCap,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::Oversize,
        Self::Rate,
        Self::Origin,
        Self::QueueFull,
        Self::RoomFull,
        Self::ConnectionCap,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::Rate => "rate",
            Self::Origin => "origin",
            Self::QueueFull => "queue_full",
            Self::RoomFull => "room_full",
            Self::ConnectionCap => "connection_cap",
        }
    }
}

/// Live state read at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    /// Open WebSocket sessions.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Rooms with two members.
    pub rooms_ready: usize,
    /// Live pending codes, when the store is on and answered.
    pub pendings: Option<u64>,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Cluster mode: counts over every node, when Redis answered.
    pub cluster: Option<ClusterLive>,
}

/// Counts over every node of a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterLive {
    /// Nodes alive.
    pub nodes: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Rooms with two members or more.
    pub rooms_ready: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Buckets of a Redis round trip, in seconds: on a LAN a command takes well under a
/// millisecond; the tail shows a loaded or distant Redis.
const REDIS_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DialectLabel {
    dialect: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DialectTypeLabel {
    dialect: &'static str,
    r#type: &'static str,
}

/// The other apps' protocols signalpost speaks, as metric labels (a room space or listener name
/// outside this list is counted as `other`).
pub const DIALECTS: [&str; 4] = ["privydrop", "dropsilk", "oodaa", "octatecode"];

/// A dialect's label value.
pub fn dialect_label(name: &str) -> &'static str {
    DIALECTS
        .iter()
        .find(|d| **d == name)
        .copied()
        .unwrap_or("other")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: CloseLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// A WebSocket close code as a label: the server's code, or `client` when the client closed or
/// the connection dropped.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct CloseLabel(Option<u16>);

impl prometheus_client::encoding::EncodeLabelValue for CloseLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("client"),
        }
    }
}

/// The server's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    rooms: Gauge,
    rooms_ready: Gauge,
    pendings: Gauge,
    uptime: Gauge,
    pairings: [Counter; PairingOutcome::ALL.len()],
    relayed_messages: [Counter; RelayKind::ALL.len()],
    relayed_bytes: [Counter; RelayKind::ALL.len()],
    /// Other kinds (the dialects'), created on first use.
    other_messages: Family<TypeLabel, Counter>,
    other_bytes: Family<TypeLabel, Counter>,
    /// Cluster-wide counts (cluster mode).
    cluster_nodes: Gauge,
    cluster_rooms: Gauge,
    cluster_rooms_ready: Gauge,
    /// Redis round trips (cluster mode), and the ones that failed.
    redis_latency: Histogram,
    redis_errors: Counter,
    /// Messages nodes published to and received from each other (cluster mode), and dropped.
    bus_messages: Family<DirectionLabel, Counter>,
    bus_dropped: Counter,
    /// Sessions of each dialect's listener now open.
    dialect_sessions: Family<DialectLabel, Gauge>,
    /// Messages relayed within each dialect's rooms, by dialect and wire type.
    dialect_messages: Family<DialectTypeLabel, Counter>,
    dialect_bytes: Family<DialectTypeLabel, Counter>,
    /// All kinds together, for `/stats` (not exported: the sum of the families above).
    relayed_total: Counter,
    relayed_total_bytes: Counter,
    refusals: [Counter; Refusal::ALL.len()],
    ws_closes: Family<CodeLabel, Counter>,
    pairing_wait: Histogram,
    room_lifetime: Histogram,
    turn_issued: Counter,
    sweeps_ok: Counter,
    sweeps_failed: Counter,
    rss: Gauge,
    open_fds: Gauge,
}

/// An open dialect session, counted in `signalpost_dialect_sessions` until dropped.
#[derive(Debug)]
pub struct DialectSession(Gauge);

impl Drop for DialectSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let rss = Gauge::default();
        let open_fds = Gauge::default();
        root.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process (VmRSS)",
            Unit::Bytes,
            rss.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors of the process",
            open_fds.clone(),
        );

        let r = root.sub_registry_with_prefix("signalpost");
        r.register(
            "build",
            "Version of the running server",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let uptime = gauge(r, "uptime_seconds", "Seconds since the server started");
        let connections = gauge(r, "connections", "Open WebSocket connections");
        let rooms = gauge(r, "rooms", "Rooms with at least one member");
        let rooms_ready = gauge(r, "rooms_ready", "Rooms with both members present");
        let pendings = gauge(
            r,
            "pending_codes",
            "Join codes not yet expired (0 when SQLite is off)",
        );

        let family = Family::<ResultLabel, Counter>::default();
        r.register(
            "pairings",
            "Pairing outcomes: codes created, accepted and expired; requests refused",
            family.clone(),
        );
        let pairings = PairingOutcome::ALL
            .map(|o| family.get_or_create_owned(&ResultLabel { result: o.as_str() }));

        let messages = Family::<TypeLabel, Counter>::default();
        r.register(
            "relayed_messages",
            "Messages relayed to a peer, by type",
            messages.clone(),
        );
        let bytes = Family::<TypeLabel, Counter>::default();
        r.register_with_unit(
            "relayed",
            "Bytes of the frames relayed to a peer, by type",
            Unit::Bytes,
            bytes.clone(),
        );
        let type_label = |k: RelayKind| TypeLabel { r#type: k.as_str() };
        let relayed_messages = RelayKind::ALL.map(|k| messages.get_or_create_owned(&type_label(k)));
        let relayed_bytes = RelayKind::ALL.map(|k| bytes.get_or_create_owned(&type_label(k)));

        let family = Family::<ReasonLabel, Counter>::default();
        r.register(
            "refusals",
            "Messages, requests and connections refused, by reason",
            family.clone(),
        );
        let refusals = Refusal::ALL.map(|reason| {
            family.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            })
        });

        let cluster_nodes = gauge(
            r,
            "cluster_nodes",
            "Nodes alive in the cluster (cluster mode)",
        );
        let cluster_rooms = gauge(
            r,
            "cluster_rooms",
            "Rooms with at least one member on any node (cluster mode)",
        );
        let cluster_rooms_ready = gauge(
            r,
            "cluster_rooms_ready",
            "Rooms with two members or more on any node (cluster mode)",
        );
        let redis_latency = Histogram::new(REDIS_BUCKETS);
        r.register_with_unit(
            "redis_call",
            "Round trips to Redis in cluster mode, failed ones included",
            Unit::Seconds,
            redis_latency.clone(),
        );
        let redis_errors = Counter::default();
        r.register(
            "redis_errors",
            "Redis calls that failed or timed out (cluster mode)",
            redis_errors.clone(),
        );
        let bus_messages = Family::<DirectionLabel, Counter>::default();
        r.register(
            "bus_messages",
            "Messages between nodes over Redis pub/sub, by direction (cluster mode)",
            bus_messages.clone(),
        );
        for direction in ["out", "in"] {
            let _ = bus_messages.get_or_create(&DirectionLabel { direction });
        }
        let bus_dropped = Counter::default();
        r.register(
            "bus_dropped",
            "Messages to other nodes dropped because the outgoing queue was full",
            bus_dropped.clone(),
        );
        let dialect_sessions = Family::<DialectLabel, Gauge>::default();
        r.register(
            "dialect_sessions",
            "Open sessions of each other app's protocol (dialect listeners)",
            dialect_sessions.clone(),
        );
        let dialect_messages = Family::<DialectTypeLabel, Counter>::default();
        r.register(
            "dialect_relayed_messages",
            "Messages relayed within each dialect's rooms, by dialect and type",
            dialect_messages.clone(),
        );
        let dialect_bytes = Family::<DialectTypeLabel, Counter>::default();
        r.register_with_unit(
            "dialect_relayed",
            "Bytes of the frames relayed within each dialect's rooms, by dialect and type",
            Unit::Bytes,
            dialect_bytes.clone(),
        );
        for dialect in DIALECTS {
            let _ = dialect_sessions.get_or_create(&DialectLabel { dialect });
        }

        let ws_closes = Family::<CodeLabel, Counter>::default();
        r.register(
            "ws_closes",
            "WebSocket sessions ended, by close code (`client`: closed by the client or dropped)",
            ws_closes.clone(),
        );

        let pairing_wait = Histogram::new(PAIRING_WAIT_BUCKETS);
        r.register_with_unit(
            "pairing_wait",
            "Time from creating a join code to its acceptance",
            Unit::Seconds,
            pairing_wait.clone(),
        );
        let room_lifetime = Histogram::new(ROOM_LIFETIME_BUCKETS);
        r.register_with_unit(
            "room_lifetime",
            "Time a room was open in the hub, from its first join to its end",
            Unit::Seconds,
            room_lifetime.clone(),
        );

        let turn_issued = Counter::default();
        r.register(
            "turn_credentials_issued",
            "TURN credentials minted",
            turn_issued.clone(),
        );
        let family = Family::<ResultLabel, Counter>::default();
        r.register(
            "sweeps",
            "Sweeps of expired join codes, by result",
            family.clone(),
        );
        let sweeps_ok = family.get_or_create_owned(&ResultLabel { result: "ok" });
        let sweeps_failed = family.get_or_create_owned(&ResultLabel { result: "error" });

        Self {
            registry: root,
            connections,
            rooms,
            rooms_ready,
            pendings,
            uptime,
            pairings,
            relayed_messages,
            relayed_bytes,
            other_messages: messages,
            other_bytes: bytes,
            relayed_total: Counter::default(),
            relayed_total_bytes: Counter::default(),
            dialect_sessions,
            dialect_messages,
            dialect_bytes,
            cluster_nodes,
            cluster_rooms,
            cluster_rooms_ready,
            redis_latency,
            redis_errors,
            bus_messages,
            bus_dropped,
            refusals,
            ws_closes,
            pairing_wait,
            room_lifetime,
            turn_issued,
            sweeps_ok,
            sweeps_failed,
            rss,
            open_fds,
        }
    }

    /// Counts one pairing outcome.
    pub fn pairing(&self, outcome: PairingOutcome) {
        self.pairing_count(outcome, 1);
    }

    /// Counts `n` codes or requests of one outcome (the sweeper expires many at once).
    pub fn pairing_count(&self, outcome: PairingOutcome, n: u64) {
        self.pairings[outcome as usize].inc_by(n);
    }

    /// Records a code accepted `waited` after it was created.
    pub fn accepted_after(&self, waited: Duration) {
        self.pairing_wait.observe(waited.as_secs_f64());
    }

    /// Counts one relayed message of `bytes` bytes, by its type on the wire.
    pub fn relayed(&self, kind: &'static str, bytes: usize) {
        self.relayed_total.inc();
        self.relayed_total_bytes.inc_by(bytes as u64);
        match RelayKind::ALL.iter().position(|k| k.as_str() == kind) {
            Some(i) => {
                self.relayed_messages[i].inc();
                self.relayed_bytes[i].inc_by(bytes as u64);
            }
            None => {
                let label = TypeLabel { r#type: kind };
                self.other_messages.get_or_create(&label).inc();
                self.other_bytes.get_or_create(&label).inc_by(bytes as u64);
            }
        }
    }

    /// Counts one message relayed in a room of `space`: signalpost's own (`s`) by type, a
    /// dialect's by dialect and type.
    pub fn relayed_in(&self, space: &str, kind: &'static str, bytes: usize) {
        if space == "s" {
            return self.relayed(kind, bytes);
        }
        self.relayed_total.inc();
        self.relayed_total_bytes.inc_by(bytes as u64);
        let label = DialectTypeLabel {
            dialect: dialect_label(space),
            r#type: kind,
        };
        self.dialect_messages.get_or_create(&label).inc();
        self.dialect_bytes
            .get_or_create(&label)
            .inc_by(bytes as u64);
    }

    /// A session of a dialect's listener opened; the returned guard counts it closed when
    /// dropped.
    pub fn dialect_session(self: &std::sync::Arc<Self>, dialect: &'static str) -> DialectSession {
        let gauge = self
            .dialect_sessions
            .get_or_create(&DialectLabel {
                dialect: dialect_label(dialect),
            })
            .clone();
        gauge.inc();
        DialectSession(gauge)
    }

    /// Records one Redis round trip.
    pub fn redis_call(&self, took: Duration, ok: bool) {
        self.redis_latency.observe(took.as_secs_f64());
        if !ok {
            self.redis_errors.inc();
        }
    }

    /// Counts one message between nodes, published (`outgoing`) or received.
    pub fn bus_message(&self, outgoing: bool) {
        let direction = if outgoing { "out" } else { "in" };
        self.bus_messages
            .get_or_create(&DirectionLabel { direction })
            .inc();
    }

    /// Counts a message to other nodes dropped for a full outgoing queue.
    pub fn bus_dropped(&self) {
        self.bus_dropped.inc();
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: Refusal) {
        self.refusals[reason as usize].inc();
    }

    /// Counts a TCP connection closed at once because `MAX_CONNECTIONS` were open.
    pub fn connection_refused(&self) {
        self.refused(Refusal::ConnectionCap);
    }

    /// Counts a WebSocket session's end: `Some(code)` when the server closed it with that code,
    /// `None` when the client closed it or the connection dropped.
    pub fn ws_closed(&self, code: Option<u16>) {
        self.ws_closes
            .get_or_create(&CodeLabel {
                code: CloseLabel(code),
            })
            .inc();
    }

    /// Records a room that was open for `lifetime`.
    pub fn room_ended(&self, lifetime: Duration) {
        self.room_lifetime.observe(lifetime.as_secs_f64());
    }

    /// Counts TURN credentials handed out.
    pub fn turn_issued(&self) {
        self.turn_issued.inc();
    }

    /// Counts one sweep that removed `unaccepted` codes which expired without being accepted.
    pub fn swept(&self, unaccepted: u64) {
        self.sweeps_ok.inc();
        self.pairing_count(PairingOutcome::Expired, unaccepted);
    }

    /// Counts one sweep that failed.
    pub fn sweep_failed(&self) {
        self.sweeps_failed.inc();
    }

    /// How many of one pairing outcome so far.
    pub fn pairings(&self, outcome: PairingOutcome) -> u64 {
        self.pairings[outcome as usize].get()
    }

    /// Messages and bytes relayed so far, all types together.
    pub fn relayed_totals(&self) -> (u64, u64) {
        let messages = self.relayed_total.get();
        let bytes = self.relayed_total_bytes.get();
        (messages, bytes)
    }

    /// The text exposition, with the live gauges set from `live` and the process's own figures.
    pub fn render(&self, live: &Live) -> String {
        self.connections
            .set(saturating_i64(live.connections as u64));
        self.rooms.set(saturating_i64(live.rooms as u64));
        self.rooms_ready
            .set(saturating_i64(live.rooms_ready as u64));
        self.pendings
            .set(saturating_i64(live.pendings.unwrap_or_default()));
        self.uptime.set(saturating_i64(live.uptime_secs));
        if let Some(cluster) = live.cluster {
            self.cluster_nodes.set(saturating_i64(cluster.nodes as u64));
            self.cluster_rooms.set(saturating_i64(cluster.rooms as u64));
            self.cluster_rooms_ready
                .set(saturating_i64(cluster.rooms_ready as u64));
        }
        if let Some(rss) = super::process::rss_bytes() {
            self.rss.set(saturating_i64(rss));
        }
        if let Some(fds) = super::process::open_fds() {
            self.open_fds.set(saturating_i64(fds));
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn every_labelled_series_is_exposed_at_zero_before_anything_happens() {
        let text = Metrics::new().render(&Live::default());
        for outcome in PairingOutcome::ALL {
            let series = format!(
                "signalpost_pairings_total{{result=\"{}\"}} 0",
                outcome.as_str()
            );
            assert!(text.contains(&series), "{series} missing in\n{text}");
        }
        for reason in Refusal::ALL {
            let series = format!(
                "signalpost_refusals_total{{reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(text.contains(&series), "{series} missing");
        }
        assert!(text.contains("signalpost_relayed_bytes_total{type=\"webrtc_offer\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn typed_calls_move_exactly_their_series() {
        let m = Metrics::new();
        m.pairing(PairingOutcome::Accepted);
        m.relayed("ice_candidate", 40);
        m.relayed("ice_candidate", 2);
        m.refused(Refusal::QueueFull);
        m.ws_closed(Some(1008));
        m.ws_closed(None);
        m.swept(3);
        m.accepted_after(Duration::from_secs(2));
        let text = m.render(&Live {
            connections: 4,
            ..Live::default()
        });
        for expected in [
            "signalpost_pairings_total{result=\"accepted\"} 1",
            "signalpost_pairings_total{result=\"expired\"} 3",
            "signalpost_relayed_messages_total{type=\"ice_candidate\"} 2",
            "signalpost_relayed_bytes_total{type=\"ice_candidate\"} 42",
            "signalpost_refusals_total{reason=\"queue_full\"} 1",
            "signalpost_ws_closes_total{code=\"1008\"} 1",
            "signalpost_ws_closes_total{code=\"client\"} 1",
            "signalpost_sweeps_total{result=\"ok\"} 1",
            "signalpost_pairing_wait_seconds_count 1",
            "signalpost_connections 4",
        ] {
            assert!(text.contains(expected), "{expected} missing in\n{text}");
        }
        assert_eq!(
            line(&text, "signalpost_pairing_wait_seconds_bucket{le=\"1.0\"}"),
            Some("signalpost_pairing_wait_seconds_bucket{le=\"1.0\"} 0")
        );
        assert_eq!(m.relayed_totals(), (2, 42));
    }

    #[test]
    fn two_servers_in_one_process_count_apart() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.turn_issued();
        assert!(
            a.render(&Live::default())
                .contains("signalpost_turn_credentials_issued_total 1")
        );
        assert!(
            b.render(&Live::default())
                .contains("signalpost_turn_credentials_issued_total 0")
        );
    }
}
