//! How much work a cluster's Redis did during a run: its own counters (`INFO all`), read before and
//! after the measured traffic, as commands and CPU per operation.
//!
//! Reading the counters around the target's traffic alone, rather than around a whole `loadgen`
//! process, leaves out the baseline's runs, the other rounds and the set-up of rooms, so that
//! "commands per message delivered" is what relaying costs. Redis's own counters include what the
//! nodes' background tasks (heartbeats) do meanwhile: a few commands per second per node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// How long reading the counters may take: Redis answers `INFO` in well under a millisecond, even
/// loaded; longer means it is stuck, and the measurement is better reported missing than late.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest `INFO` reply accepted: a few KiB normally, plus one line per command type ever called.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Commands that run scripts: each is one round trip from a node, however many commands it runs.
const SCRIPT_COMMANDS: [&str; 4] = ["eval", "evalsha", "fcall", "fcall_ro"];

/// The load generator's own reads, left out of the counts.
const OWN_COMMANDS: [&str; 1] = ["info"];

/// Why the counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("redis INFO: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis INFO: no answer within {INFO_TIMEOUT:?}")]
    Timeout,
    #[error("redis INFO: unexpected reply {0:?}")]
    Reply(String),
    #[error("redis INFO: no {0} in the reply")]
    Missing(&'static str),
}

/// Redis's cumulative counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// `calls` of every command type (`cmdstat_<name>`), commands run by scripts included.
    calls: BTreeMap<String, u64>,
    /// `used_cpu_user + used_cpu_sys`, seconds.
    cpu_s: f64,
    /// `used_memory`, bytes.
    used_memory: u64,
}

impl Counters {
    /// Reads the counters of the Redis at `addr`.
    pub async fn read(addr: SocketAddr) -> Result<Counters, InfoError> {
        let reply = tokio::time::timeout(INFO_TIMEOUT, info_all(addr))
            .await
            .map_err(|_| InfoError::Timeout)??;
        Counters::parse(&reply)
    }

    /// Parses the text of an `INFO` reply that has the commandstats, cpu and memory sections.
    fn parse(info: &str) -> Result<Counters, InfoError> {
        let mut calls = BTreeMap::new();
        let (mut user, mut sys, mut used_memory) = (None, None, None);
        for line in info.lines() {
            let Some((key, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            if let Some(command) = key.strip_prefix("cmdstat_") {
                let count = value
                    .split(',')
                    .find_map(|field| field.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| InfoError::Reply(line.to_owned()))?;
                calls.insert(command.to_owned(), count);
            }
            match key {
                "used_cpu_user" => user = value.parse::<f64>().ok(),
                "used_cpu_sys" => sys = value.parse::<f64>().ok(),
                "used_memory" => used_memory = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        Ok(Counters {
            calls,
            cpu_s: user.ok_or(InfoError::Missing("used_cpu_user"))?
                + sys.ok_or(InfoError::Missing("used_cpu_sys"))?,
            used_memory: used_memory.ok_or(InfoError::Missing("used_memory"))?,
        })
    }

    /// What Redis did from `earlier` to these counters, over `ops` operations of kind `per`.
    fn since(&self, earlier: &Counters, per: &'static str, ops: u64) -> Usage {
        let by_command: BTreeMap<String, u64> = self
            .calls
            .iter()
            .filter(|(name, _)| !OWN_COMMANDS.contains(&name.as_str()))
            .map(|(name, calls)| {
                let before = earlier.calls.get(name).copied().unwrap_or(0);
                (name.clone(), calls.saturating_sub(before))
            })
            .filter(|(_, calls)| *calls > 0)
            .collect();
        let commands = by_command.values().sum();
        let scripts = SCRIPT_COMMANDS
            .iter()
            .filter_map(|name| by_command.get(*name))
            .sum();
        let cpu_s = (self.cpu_s - earlier.cpu_s).max(0.0);
        let memory_bytes = self.used_memory as i64 - earlier.used_memory as i64;
        let per_op = |total: f64| (ops > 0).then(|| total / ops as f64);
        Usage {
            per,
            ops,
            commands,
            scripts,
            cpu_s,
            memory_bytes,
            commands_per_op: per_op(commands as f64),
            scripts_per_op: per_op(scripts as f64),
            cpu_us_per_op: per_op(cpu_s * 1e6),
            memory_bytes_per_op: per_op(memory_bytes as f64),
            by_command,
        }
    }
}

/// What Redis did during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// What one operation is: `pairing`, `message delivered` or `connection`.
    pub per: &'static str,
    /// Operations completed while metered.
    pub ops: u64,
    /// Commands Redis executed, those run by scripts included (the load generator's own `INFO`
    /// excluded).
    pub commands: u64,
    /// Script invocations (`EVAL`, `EVALSHA`, `FCALL`): round trips from the nodes that ran many
    /// commands at once.
    pub scripts: u64,
    /// Redis CPU time, user and system, in seconds.
    pub cpu_s: f64,
    /// Change in Redis's `used_memory`.
    pub memory_bytes: i64,
    /// `commands / ops`; `null` without operations.
    pub commands_per_op: Option<f64>,
    /// `scripts / ops`.
    pub scripts_per_op: Option<f64>,
    /// Redis CPU microseconds per operation.
    pub cpu_us_per_op: Option<f64>,
    /// `memory_bytes / ops`: what Redis keeps per connection, in `connections`.
    pub memory_bytes_per_op: Option<f64>,
    /// Commands executed, by name.
    pub by_command: BTreeMap<String, u64>,
}

impl Usage {
    /// One line for the human-readable tables.
    pub fn line(&self) -> String {
        let per_op = |n: Option<f64>, decimals: usize| {
            n.map_or("n/a".to_owned(), |n| format!("{n:.decimals$}"))
        };
        let mut busiest: Vec<(&String, &u64)> = self.by_command.iter().collect();
        busiest.sort_by(|a, b| b.1.cmp(a.1));
        let busiest: Vec<String> = busiest
            .iter()
            .take(6)
            .map(|(name, calls)| format!("{name} {calls}"))
            .collect();
        format!(
            "  redis: {} commands ({} per {}), {} scripts ({} per {}), CPU {:.2} s ({} µs per {}), \
             memory {:+.1} MiB\n  redis commands: {}\n",
            self.commands,
            per_op(self.commands_per_op, 2),
            self.per,
            self.scripts,
            per_op(self.scripts_per_op, 2),
            self.per,
            self.cpu_s,
            per_op(self.cpu_us_per_op, 1),
            self.per,
            self.memory_bytes as f64 / 1048576.0,
            busiest.join(", ")
        )
    }
}

/// Counters read when a run's traffic starts, to be compared with those read when it ends.
pub struct Meter {
    addr: SocketAddr,
    start: Counters,
}

/// Starts metering the Redis at `redis`, if there is one; a failure is reported to `error` (as an
/// error kind) and leaves the run unmetered.
pub async fn start(redis: Option<&Target>, error: impl FnOnce(String)) -> Option<Meter> {
    let addr = redis?.addr;
    match Counters::read(addr).await {
        Ok(start) => Some(Meter { addr, start }),
        Err(e) => {
            error(e.to_string());
            None
        }
    }
}

/// Ends metering: what Redis did since [`start`], over `ops` operations of kind `per`.
pub async fn stop(
    meter: Option<Meter>,
    per: &'static str,
    ops: u64,
    error: impl FnOnce(String),
) -> Option<Usage> {
    let meter = meter?;
    match Counters::read(meter.addr).await {
        Ok(end) => Some(end.since(&meter.start, per, ops)),
        Err(e) => {
            error(e.to_string());
            None
        }
    }
}

/// Sends `INFO all` and returns the bulk string it answers.
async fn info_all(addr: SocketAddr) -> Result<String, InfoError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
        .await?;
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        if let Some(text) = bulk_string(&buffer)? {
            return Ok(text);
        }
        if buffer.len() > MAX_REPLY_BYTES {
            return Err(InfoError::Reply("reply too long".into()));
        }
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(InfoError::Reply("connection closed".into()));
        }
    }
}

/// The RESP bulk string (`$<len>\r\n<bytes>\r\n`) in `buffer`, once it is all there.
fn bulk_string(buffer: &[u8]) -> Result<Option<String>, InfoError> {
    let Some(header_end) = buffer.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&buffer[..header_end]);
    let length: usize = header
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| InfoError::Reply(header.chars().take(200).collect()))?;
    let body = header_end + 2;
    match buffer.get(body..body + length) {
        Some(text) => Ok(Some(String::from_utf8_lossy(text).into_owned())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Memory\r\nused_memory:1000000\r\nused_memory_human:976.56K\r\n\
        # CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\n\
        # Commandstats\r\n\
        cmdstat_evalsha:calls=10,usec=500,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_publish:calls=7,usec=20,usec_per_call=2.86,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=3,usec=60,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn counters_are_read_from_info_sections() {
        let counters = Counters::parse(INFO).expect("parses");
        assert_eq!(counters.cpu_s, 3.75);
        assert_eq!(counters.used_memory, 1_000_000);
        assert_eq!(counters.calls.get("evalsha"), Some(&10));
        assert_eq!(counters.calls.get("publish"), Some(&7));
        assert!(matches!(
            Counters::parse("used_cpu_user:1.0\r\n"),
            Err(InfoError::Missing(_))
        ));
    }

    #[test]
    fn usage_is_the_difference_per_operation_without_info_itself() {
        let before = Counters::parse(INFO).expect("parses");
        let mut after = before.clone();
        after.calls.insert("evalsha".into(), 30);
        after.calls.insert("publish".into(), 47);
        after.calls.insert("get".into(), 20);
        after.calls.insert("info".into(), 4);
        after.cpu_s += 0.02;
        after.used_memory -= 4096;
        let usage = after.since(&before, "message delivered", 40);
        assert_eq!((usage.commands, usage.scripts), (80, 20));
        assert_eq!(usage.commands_per_op, Some(2.0));
        assert_eq!(usage.scripts_per_op, Some(0.5));
        let cpu_us = usage.cpu_us_per_op.expect("ops");
        assert!((cpu_us - 500.0).abs() < 1e-6, "{cpu_us}");
        assert_eq!(usage.memory_bytes, -4096);
        assert_eq!(usage.memory_bytes_per_op, Some(-102.4));
        assert_eq!(usage.by_command.get("info"), None);
        assert_eq!(usage.by_command.len(), 3);
        assert_eq!(after.since(&before, "pairing", 0).commands_per_op, None);
    }

    #[test]
    fn bulk_strings_are_read_whole_or_not_at_all() {
        assert_eq!(bulk_string(b"$5\r\nhel").expect("partial"), None);
        assert_eq!(bulk_string(b"$5").expect("no header yet"), None);
        assert_eq!(
            bulk_string(b"$5\r\nhello\r\n").expect("whole"),
            Some("hello".to_owned())
        );
        assert!(matches!(
            bulk_string(b"-NOAUTH Authentication required.\r\n"),
            Err(InfoError::Reply(_))
        ));
    }
}
