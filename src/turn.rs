//! Short-lived TURN credentials (the "TURN REST API" scheme, coturn's `use-auth-secret`).
//!
//! The server and coturn share a secret. For each request the server mints
//! `username = "<unix expiry>:<label>"` and `credential = base64(HMAC-SHA1(secret, username))`;
//! coturn recomputes the HMAC with its copy of the secret and refuses the username once the
//! expiry has passed. Browsers therefore never see a long-lived password, and a leaked
//! credential stops working after [`TurnSettings::ttl`].
//!
//! Several secrets may be configured so the secret can be rotated: the first one signs,
//! the others are only listed so that operators keep them in coturn until every credential
//! they signed has expired.
//!
//! This module is pure (no transport, no storage): the route calls
//! [`TurnSettings::ice_servers`] and maps [`TurnError`] to a status code.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// Default lifetime of minted credentials: long enough for a call to be set up and to
/// survive a few ICE restarts, short enough that a leaked credential is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Longest accepted label. The username travels in every TURN request (a STUN attribute
/// holds at most 763 bytes of UTF-8 username); 128 leaves room for the expiry prefix and
/// matches the limit on device ids elsewhere in the API.
pub const MAX_LABEL_LEN: usize = 128;

/// Length of the random label used when the caller gives none: 16 alphanumeric
/// characters (~95 bits) make collisions between concurrent clients irrelevant.
const RANDOM_LABEL_LEN: usize = 16;

/// Where TURN and STUN servers are, and how credentials for them are signed.
///
/// `Debug` is written by hand so the secrets never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSettings {
    /// Shared secrets, as in coturn's `static-auth-secret`. The first one signs; the
    /// others are kept for rotation. Empty means TURN is not configured.
    pub secrets: Vec<String>,
    /// TURN urls handed to clients, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub turn_urls: Vec<String>,
    /// STUN urls handed to clients, e.g. `stun:turn.example.org:3478`.
    pub stun_urls: Vec<String>,
    /// Lifetime of minted credentials (see [`DEFAULT_TTL`]).
    pub ttl: Duration,
}

impl TurnSettings {
    /// Where TURN and STUN servers are, and the secrets that sign TURN credentials, as
    /// configured.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            secrets: config.turn_secret.0.clone(),
            turn_urls: config.turn_urls.clone(),
            stun_urls: config.stun_urls.clone(),
            ttl: Duration::from_secs(config.turn_ttl_secs),
        }
    }
}

impl fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnSettings")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("turn_urls", &self.turn_urls)
            .field("stun_urls", &self.stun_urls)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why no ICE server list could be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// Operator's choice, not a fault: neither TURN (a secret and at least one url) nor
    /// STUN is configured. The route answers 501 `turn_not_configured`.
    #[error("neither TURN (secret and urls) nor STUN urls are configured")]
    NotConfigured,
    /// Client fault: the label is empty, longer than [`MAX_LABEL_LEN`] or has a character
    /// outside `[A-Za-z0-9._~-]`. The route answers 400 `invalid_deviceId`.
    #[error("label must be 1 to {MAX_LABEL_LEN} characters from [A-Za-z0-9._~-]")]
    InvalidLabel,
    /// Server fault: the system clock reads before 1970, so no expiry can be computed.
    #[error("system clock is before the unix epoch")]
    ClockBeforeEpoch,
}

/// The body of `GET /api/turn-credentials`: what `RTCPeerConnection` takes as
/// `iceServers`, plus the lifetime so clients know when to fetch fresh credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServers {
    /// STUN servers first, then the TURN servers with their credentials.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

/// One entry of `iceServers`, shaped like the WebRTC `RTCIceServer` dictionary.
///
/// `Debug` redacts the credential: it is a password for the relay until it expires.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` urls.
    pub urls: Vec<String>,
    /// `<unix expiry>:<label>`; absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// base64 HMAC-SHA1 of `username` under the signing secret; absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl TurnSettings {
    /// Whether minting TURN credentials is possible: a secret and at least one TURN url.
    pub fn turn_enabled(&self) -> bool {
        !self.secrets.is_empty() && !self.turn_urls.is_empty()
    }

    /// Builds the ICE server list for one client, with TURN credentials that expire
    /// `ttl` after `now`.
    ///
    /// `label` becomes the part of the username after the expiry (the client's device id
    /// when it gave one); `None` picks a random label. Without TURN, the list holds only
    /// the STUN servers; with neither, it is [`TurnError::NotConfigured`].
    pub fn ice_servers(
        &self,
        label: Option<&str>,
        now: SystemTime,
    ) -> Result<IceServers, TurnError> {
        // Validate before anything else so a bad label is a 400 whatever the configuration.
        let label = match label {
            Some(label) => parse_label(label)?.to_owned(),
            None => random_label(),
        };
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (true, Some(secret)) = (self.turn_enabled(), self.secrets.first()) {
            let now = now
                .duration_since(UNIX_EPOCH)
                .map_err(|_| TurnError::ClockBeforeEpoch)?;
            let expiry = now.saturating_add(self.ttl).as_secs();
            let username = format!("{expiry}:{label}");
            let credential = sign(secret, &username);
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        if ice_servers.is_empty() {
            return Err(TurnError::NotConfigured);
        }
        Ok(IceServers {
            ice_servers,
            ttl: self.ttl.as_secs(),
        })
    }
}

/// `base64(HMAC-SHA1(secret, username))`: the password coturn expects for `username`
/// under `use-auth-secret`.
pub fn sign(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

pub use crate::config::parse_list;

/// Accepts 1..=[`MAX_LABEL_LEN`] characters from RFC 3986's unreserved set. That excludes
/// ':' (the username's separator, coturn reads the expiry up to the first ':') and
/// anything that would need escaping in a log line or a url.
fn parse_label(label: &str) -> Result<&str, TurnError> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-');
    if (1..=MAX_LABEL_LEN).contains(&label.len()) && label.bytes().all(safe) {
        Ok(label)
    } else {
        Err(TurnError::InvalidLabel)
    }
}

fn random_label() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(RANDOM_LABEL_LEN)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TurnSettings {
        TurnSettings {
            secrets: vec!["north".into(), "older-secret".into()],
            turn_urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            stun_urls: vec!["stun:turn.example.org:3478".into()],
            ttl: DEFAULT_TTL,
        }
    }

    fn at(unix_secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix_secs)
    }

    #[test]
    fn credential_matches_a_known_answer() {
        // Expected value computed independently with
        //   printf '%s' '1700003600:alice' | openssl dgst -sha1 -hmac north -binary | base64
        // and cross-checked with Python's hmac.new(b"north", b"1700003600:alice", sha1).
        let servers = settings()
            .ice_servers(Some("alice"), at(1_700_000_000))
            .expect("configured settings list servers");
        let turn = &servers.ice_servers[1];
        assert_eq!(turn.username.as_deref(), Some("1700003600:alice"));
        assert_eq!(
            turn.credential.as_deref(),
            Some("wjwSXO2ch1B6VaLTLMy2Avn5O9o=")
        );
        assert_eq!(servers.ttl, 3600);
    }

    #[test]
    fn first_secret_signs() {
        let servers = settings()
            .ice_servers(Some("bob"), at(10))
            .expect("configured settings list servers");
        let turn = &servers.ice_servers[1];
        let username = turn.username.as_deref().expect("TURN entry has a username");
        assert_eq!(
            turn.credential.as_deref(),
            Some(sign("north", username).as_str())
        );
        assert_ne!(
            turn.credential.as_deref(),
            Some(sign("older-secret", username).as_str())
        );
    }

    #[test]
    fn expiry_is_now_plus_ttl() {
        let settings = TurnSettings {
            ttl: Duration::from_secs(90),
            ..settings()
        };
        let servers = settings
            .ice_servers(Some("d"), at(1_000))
            .expect("configured settings list servers");
        assert_eq!(servers.ice_servers[1].username.as_deref(), Some("1090:d"));
        assert_eq!(servers.ttl, 90);
    }

    #[test]
    fn serializes_in_the_rtc_ice_server_shape() {
        let servers = settings()
            .ice_servers(Some("alice"), at(1_700_000_000))
            .expect("configured settings list servers");
        let json = serde_json::to_value(&servers).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "iceServers": [
                    {"urls": ["stun:turn.example.org:3478"]},
                    {
                        "urls": ["turn:turn.example.org:3478?transport=udp"],
                        "username": "1700003600:alice",
                        "credential": "wjwSXO2ch1B6VaLTLMy2Avn5O9o="
                    }
                ],
                "ttl": 3600
            })
        );
    }

    #[test]
    fn random_labels_are_safe_and_differ() {
        let a = settings()
            .ice_servers(None, at(0))
            .expect("configured settings list servers");
        let b = settings()
            .ice_servers(None, at(0))
            .expect("configured settings list servers");
        let label = |s: &IceServers| {
            let username = s.ice_servers[1]
                .username
                .clone()
                .expect("TURN entry has a username");
            username
                .split_once(':')
                .expect("username has an expiry prefix")
                .1
                .to_owned()
        };
        assert_eq!(label(&a).len(), RANDOM_LABEL_LEN);
        assert!(parse_label(&label(&a)).is_ok());
        assert_ne!(label(&a), label(&b));
    }

    #[test]
    fn unsafe_or_badly_sized_labels_are_rejected() {
        let too_long = "a".repeat(MAX_LABEL_LEN + 1);
        for bad in ["", "a:b", "a b", "a/b", "é", "a\n", too_long.as_str()] {
            assert_eq!(
                settings().ice_servers(Some(bad), at(0)),
                Err(TurnError::InvalidLabel),
                "label {bad:?}"
            );
        }
        let longest = "a".repeat(MAX_LABEL_LEN);
        for good in ["A-z_0.9~", longest.as_str()] {
            assert!(
                settings().ice_servers(Some(good), at(0)).is_ok(),
                "label {good:?}"
            );
        }
    }

    #[test]
    fn without_a_secret_only_stun_is_listed() {
        let settings = TurnSettings {
            secrets: vec![],
            ..settings()
        };
        let servers = settings
            .ice_servers(None, at(0))
            .expect("configured settings list servers");
        assert_eq!(servers.ice_servers.len(), 1);
        assert_eq!(servers.ice_servers[0].username, None);
        assert_eq!(servers.ice_servers[0].credential, None);
    }

    #[test]
    fn without_stun_only_turn_is_listed() {
        let settings = TurnSettings {
            stun_urls: vec![],
            ..settings()
        };
        let servers = settings
            .ice_servers(None, at(0))
            .expect("configured settings list servers");
        assert_eq!(servers.ice_servers.len(), 1);
        assert!(servers.ice_servers[0].credential.is_some());
    }

    #[test]
    fn nothing_configured_is_an_error() {
        let none = TurnSettings {
            secrets: vec![],
            turn_urls: vec![],
            stun_urls: vec![],
            ttl: DEFAULT_TTL,
        };
        assert_eq!(none.ice_servers(None, at(0)), Err(TurnError::NotConfigured));
        // A secret without any TURN url gives clients nothing to use either.
        let secret_only = TurnSettings {
            secrets: vec!["s".into()],
            ..none
        };
        assert_eq!(
            secret_only.ice_servers(None, at(0)),
            Err(TurnError::NotConfigured)
        );
    }

    #[test]
    fn a_clock_before_1970_is_an_error_not_a_panic() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            settings().ice_servers(None, before),
            Err(TurnError::ClockBeforeEpoch)
        );
    }

    #[test]
    fn debug_output_hides_secrets_and_credentials() {
        let settings = settings();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("north") && !shown.contains("older-secret"),
            "{shown}"
        );
        assert!(shown.contains("2 redacted"), "{shown}");

        let servers = settings
            .ice_servers(Some("alice"), at(1_700_000_000))
            .expect("configured settings list servers");
        let shown = format!("{servers:?}");
        assert!(!shown.contains("wjwSXO2ch1B6VaLTLMy2Avn5O9o="), "{shown}");
        assert!(shown.contains("1700003600:alice"), "{shown}");
    }

    #[test]
    fn parse_list_trims_and_drops_empty_items() {
        assert_eq!(parse_list(" a, b ,,c,"), vec!["a", "b", "c"]);
        assert!(parse_list("").is_empty());
        assert!(parse_list(" , ").is_empty());
    }
}
