//! OctateCode's room tokens: a signed claim that a user may join a room until a time.
//!
//! A token is `<claims>.<signature>`, both URL-safe base64 without padding: the claims are the
//! JSON `{"u": userId, "r": roomId, "exp": milliseconds since the epoch}`, the signature an
//! HMAC-SHA1 of the encoded claims under `OCTATECODE_AUTH_SECRET`. Unlike the original's tokens
//! (which held the secret itself, base64-encoded) nothing in a token reveals the secret, and any
//! server with the secret verifies it: no token store, so restarts and other nodes accept it.
//!
//! HMAC-SHA1 rather than a SHA-2 HMAC: the crates are already in the build (TURN credentials use
//! them), and HMAC's security rests on the hash's pseudo-randomness, not on its collision
//! resistance, which is what SHA-1 lost; a 160-bit tag cannot be forged by guessing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use crate::config::Secret;

/// Bytes of the MAC input that tie a signature to this use of the secret, so a signature made
/// for anything else under the same secret is never a token's.
const CONTEXT: &[u8] = b"signalpost octatecode token v1\n";

/// Longest token accepted, in bytes: a token for ids at their longest is far shorter.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// Why a token was refused (the client hears only `Invalid token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64 parts, or claims that are not ours.
    #[error("malformed")]
    Malformed,
    /// Not signed with this server's secret.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// For another user or room.
    #[error("for another user or room")]
    OtherGrant,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user (the lean protocol's `from`).
    u: String,
    /// The room.
    r: String,
    /// Milliseconds since the Unix epoch after which the token is dead.
    exp: i64,
}

/// Issues and verifies tokens under one secret.
#[derive(Clone)]
pub struct Tokens {
    key: Hmac<Sha1>,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish()
    }
}

impl Tokens {
    /// Tokens signed with `secret`, each valid for `ttl`.
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        let key = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        Self { key, ttl }
    }

    /// How long a token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, claims: &str) -> Hmac<Sha1> {
        let mut mac = self.key.clone();
        mac.update(CONTEXT);
        mac.update(claims.as_bytes());
        mac
    }

    /// A token for `user` in `room`, issued at `now_ms` (milliseconds since the epoch).
    pub fn issue(&self, user: &str, room: &str, now_ms: i64) -> String {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let claims = Claims {
            u: user.to_owned(),
            r: room.to_owned(),
            exp: now_ms.saturating_add(ttl_ms),
        };
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        let claims = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&claims).finalize().into_bytes());
        format!("{claims}.{signature}")
    }

    /// Whether `token` lets `user` join `room` at `now_ms`.
    pub fn verify(
        &self,
        token: &str,
        user: &str,
        room: &str,
        now_ms: i64,
    ) -> Result<(), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (claims, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        // Constant time: the comparison tells nothing about how much of a forgery was right.
        self.mac(claims)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| TokenError::Malformed)?;
        if now_ms >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.u != user || claims.r != room {
            return Err(TokenError::OtherGrant);
        }
        Ok(())
    }
}

/// `expiresIn` as the original words it ("1 hour"), for any lifetime.
pub fn describe(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    let (n, unit) = if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_752_919_200_000;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&secret.parse().unwrap(), Duration::from_secs(3600))
    }

    #[test]
    fn a_token_admits_its_user_to_its_room_until_it_expires() {
        let t = tokens("north");
        let token = t.issue("alice", "room-1", NOW);
        assert_eq!(t.verify(&token, "alice", "room-1", NOW), Ok(()));
        assert_eq!(t.verify(&token, "alice", "room-1", NOW + 3_599_999), Ok(()));
        assert_eq!(
            t.verify(&token, "alice", "room-1", NOW + 3_600_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            t.verify(&token, "bob", "room-1", NOW),
            Err(TokenError::OtherGrant)
        );
        assert_eq!(
            t.verify(&token, "alice", "room-2", NOW),
            Err(TokenError::OtherGrant)
        );
    }

    #[test]
    fn a_token_of_another_secret_or_altered_is_refused() {
        let token = tokens("south").issue("alice", "room-1", NOW);
        let t = tokens("north");
        assert_eq!(
            t.verify(&token, "alice", "room-1", NOW),
            Err(TokenError::BadSignature)
        );
        let genuine = t.issue("alice", "room-1", NOW);
        // Claims rewritten to another user, with the genuine signature.
        let (_, signature) = genuine.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"u":"mallory","r":"room-1","exp":9e15}"#);
        let forged = format!("{forged_claims}.{signature}");
        assert_eq!(
            t.verify(&forged, "mallory", "room-1", NOW),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            ".",
            "a.b",
            "not-a-token",
            &format!("{genuine}x"),
            &format!("x{genuine}"),
        ] {
            assert!(t.verify(bad, "alice", "room-1", NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_does_not_hold_the_secret() {
        let secret = "a-secret-nobody-may-read";
        let token = tokens(secret).issue("alice", "room-1", NOW);
        let (claims, _) = token.split_once('.').unwrap();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert!(!claims.contains(secret) && !token.contains(secret));
    }

    #[test]
    fn lifetimes_are_worded_as_the_original_words_an_hour() {
        assert_eq!(describe(Duration::from_secs(3600)), "1 hour");
        assert_eq!(describe(Duration::from_secs(7200)), "2 hours");
        assert_eq!(describe(Duration::from_secs(600)), "10 minutes");
        assert_eq!(describe(Duration::from_secs(2)), "2 seconds");
    }
}
