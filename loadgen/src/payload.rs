//! Realistic signaling messages that carry a [`Mark`]: which room and side sent them, their
//! sequence number and their send time.
//!
//! Messages are rendered from templates (JSON text split around the mark's digits), so building one
//! costs a copy, not a serialisation. The mark sits inside the SDP as an attribute line, or inside
//! the candidate object as an extra field: both are payload the server must relay byte for byte.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::json;

/// Precedes the mark's digits; appears nowhere else in a message.
const MARK_TOKEN: &str = "lgmark:";
const ROOM_DIGITS: usize = 8;
const SEQ_DIGITS: usize = 10;
/// Nanoseconds since the run's start: 16 digits cover 115 days.
const TIME_DIGITS: usize = 16;
const MARK_DIGITS: usize = ROOM_DIGITS + 1 + SEQ_DIGITS + TIME_DIGITS;

/// Realistic SDP sizes (audio + video with the usual codec list): 2 to 6 KiB.
const SDP_MIN_BYTES: usize = 2048;
const SDP_MAX_BYTES: usize = 6144;
/// With realistic sizes, each client sends one SDP then this many candidates, over and over:
/// a negotiation is one offer or answer and a handful of trickled candidates per side.
const CANDIDATES_PER_SDP: u64 = 7;
/// Requested sizes below this are candidates; at or above, SDP messages.
const SDP_THRESHOLD_BYTES: usize = 1024;
/// Template variants per kind, so consecutive messages differ a little in size and content.
const VARIANTS: usize = 8;

/// What a received message says about its sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Index of the room it was sent in.
    pub room: u32,
    /// 0 for the room's first member (initiator), 1 for the second.
    pub side: u8,
    /// Per-sender sequence number, from 0.
    pub seq: u64,
    /// Send time in nanoseconds since the run's start.
    pub sent_ns: u64,
}

impl Mark {
    fn push_digits(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "{:0rw$}{}{:0sw$}{:0tw$}",
            self.room,
            self.side,
            self.seq,
            self.sent_ns,
            rw = ROOM_DIGITS,
            sw = SEQ_DIGITS,
            tw = TIME_DIGITS
        );
    }

    /// Finds and parses the mark in a message's text.
    pub fn find(text: &str) -> Option<Mark> {
        let start = text.find(MARK_TOKEN)? + MARK_TOKEN.len();
        let digits = text.get(start..start + MARK_DIGITS)?;
        let (room, rest) = digits.split_at(ROOM_DIGITS);
        let (side, rest) = rest.split_at(1);
        let (seq, time) = rest.split_at(SEQ_DIGITS);
        Some(Mark {
            room: room.parse().ok()?,
            side: side.parse().ok()?,
            seq: seq.parse().ok()?,
            sent_ns: time.parse().ok()?,
        })
    }
}

/// A message's JSON text with a hole for the mark's digits.
#[derive(Debug, Clone)]
struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    /// Serialises `message`, whose text contains the mark placeholder exactly once.
    fn from_message(message: &serde_json::Value) -> Template {
        let text = message.to_string();
        let found = text.find(&placeholder());
        debug_assert!(
            found.is_some(),
            "template without a mark placeholder: {text}"
        );
        let at = found.map_or(text.len(), |at| at + MARK_TOKEN.len());
        Template {
            prefix: text[..at].to_owned(),
            suffix: text.get(at + MARK_DIGITS..).unwrap_or_default().to_owned(),
        }
    }

    fn len(&self) -> usize {
        self.prefix.len() + MARK_DIGITS + self.suffix.len()
    }

    fn render(&self, mark: &Mark) -> String {
        let mut out = String::with_capacity(self.len());
        out += &self.prefix;
        mark.push_digits(&mut out);
        out += &self.suffix;
        out
    }
}

fn placeholder() -> String {
    format!("{MARK_TOKEN}{}", "0".repeat(MARK_DIGITS))
}

/// The messages one side of a room sends.
#[derive(Debug, Clone)]
pub struct Script {
    sdps: Vec<Template>,
    candidates: Vec<Template>,
    /// `Some(n)`: every message is `n` bytes (as near as the template allows) and of one kind.
    fixed: Option<usize>,
}

impl Script {
    /// Messages for `side` (0 sends offers, 1 answers); `size` forces every message to that many
    /// bytes, otherwise sizes are realistic and mixed.
    pub fn new(side: u8, size: Option<usize>) -> Script {
        let mut rng = rand::rng();
        let kind = if side == 0 {
            "webrtc_offer"
        } else {
            "webrtc_answer"
        };
        let sdp_sizes: Vec<usize> = match size {
            Some(n) => vec![n; VARIANTS],
            None => (0..VARIANTS)
                .map(|_| rng.random_range(SDP_MIN_BYTES..=SDP_MAX_BYTES))
                .collect(),
        };
        let candidate_size = size.unwrap_or(0);
        Script {
            sdps: sdp_sizes
                .into_iter()
                .map(|n| sdp_message(kind, n, &mut rng))
                .collect(),
            candidates: (0..VARIANTS)
                .map(|i| candidate_message(i, candidate_size, &mut rng))
                .collect(),
            fixed: size,
        }
    }

    /// The text of message number `mark.seq`.
    pub fn render(&self, mark: &Mark) -> String {
        let variant = (mark.seq as usize / (CANDIDATES_PER_SDP as usize + 1)) % VARIANTS;
        let sdp = match self.fixed {
            Some(n) => n >= SDP_THRESHOLD_BYTES,
            None => mark.seq.is_multiple_of(CANDIDATES_PER_SDP + 1),
        };
        let template = if sdp {
            &self.sdps[variant]
        } else {
            &self.candidates[mark.seq as usize % VARIANTS]
        };
        template.render(mark)
    }
}

/// An `ice_candidate` message of about `size` bytes. Without a size it is a browser's mDNS host
/// candidate (~240 bytes); a small forced size gets the compact form, an IPv4 host candidate
/// (documentation address, ~200 bytes).
fn candidate_message(variant: usize, size: usize, rng: &mut impl Rng) -> Template {
    let compact = size > 0 && size < 240;
    let (host, kind) = if compact {
        (format!("203.0.113.{}", rng.random_range(1..255)), "host")
    } else {
        let mdns = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}.local",
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>() & 0xfff,
            rng.random::<u16>() & 0xfff,
            rng.random::<u64>() & 0xffff_ffff_ffff
        );
        (mdns, "host generation 0")
    };
    let candidate = format!(
        "candidate:{} {} udp 2122260223 {host} {} typ {kind}",
        rng.random::<u32>(),
        1 + variant % 2,
        49152 + rng.random_range(0..16384)
    );
    let build = |pad: &str| {
        let mut value = json!({
            "type": "ice_candidate",
            "candidate": {
                "candidate": candidate,
                "sdpMid": (variant % 2).to_string(),
                "sdpMLineIndex": variant % 2,
                "lg": placeholder(),
            }
        });
        if !pad.is_empty() {
            value["candidate"]["usernameFragment"] = json!(pad);
        }
        Template::from_message(&value)
    };
    let natural = build("");
    // The padding field costs `,"usernameFragment":""` (22 bytes) plus its value.
    match size.checked_sub(natural.len() + 22) {
        Some(pad) if pad > 0 => build(&"u".repeat(pad)),
        _ => natural,
    }
}

/// A `webrtc_offer`/`webrtc_answer` whose JSON text is `size` bytes: a Chrome-like audio+video SDP
/// grown with codec blocks and topped up with a padding attribute.
fn sdp_message(kind: &str, size: usize, rng: &mut impl Rng) -> Template {
    let mut lines = sdp_head(rng);
    let mut payload_type = 96;
    let wrap = |sdp: &str| Template::from_message(&json!({ "type": kind, "sdp": sdp }));
    // Each line adds its length plus 4 bytes for the escaped CRLF.
    let empty_len = json!({ "type": kind, "sdp": "" }).to_string().len();
    let json_len = |lines: &[String]| empty_len + lines.iter().map(|l| l.len() + 4).sum::<usize>();
    // Leave room for a padding line, `a=x-pad:` plus at least one character.
    while json_len(&lines) + 13 + 220 < size && payload_type < 128 {
        lines.extend(video_codec_block(payload_type, rng));
        payload_type += 2;
    }
    let pad_line = 8 + 4;
    if let Some(pad) = size
        .checked_sub(json_len(&lines) + pad_line)
        .filter(|p| *p > 0)
    {
        lines.push(format!("a=x-pad:{}", "p".repeat(pad)));
    }
    let mut sdp = lines.join("\r\n");
    sdp += "\r\n";
    wrap(&sdp)
}

fn sdp_head(rng: &mut impl Rng) -> Vec<String> {
    let fingerprint: Vec<String> = (0..32)
        .map(|_| format!("{:02X}", rng.random::<u8>()))
        .collect();
    let ufrag: String = (0..4)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect();
    let pwd: String = (0..24)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect();
    let ssrc = rng.random::<u32>();
    let mut lines: Vec<String> = [
        "v=0".to_owned(),
        format!("o=- {} 2 IN IP4 127.0.0.1", rng.random::<u64>() >> 1),
        "s=-".to_owned(),
        "t=0 0".to_owned(),
        "a=group:BUNDLE 0 1".to_owned(),
        "a=extmap-allow-mixed".to_owned(),
        "a=msid-semantic: WMS stream".to_owned(),
        placeholder().replacen(MARK_TOKEN, &format!("a={MARK_TOKEN}"), 1),
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126".to_owned(),
        "c=IN IP4 0.0.0.0".to_owned(),
        "a=rtcp:9 IN IP4 0.0.0.0".to_owned(),
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{pwd}"),
        "a=ice-options:trickle".to_owned(),
        format!("a=fingerprint:sha-256 {}", fingerprint.join(":")),
        "a=setup:actpass".to_owned(),
        "a=mid:0".to_owned(),
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned(),
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time".to_owned(),
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            .to_owned(),
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid".to_owned(),
        "a=sendrecv".to_owned(),
        "a=msid:stream audio0".to_owned(),
        "a=rtcp-mux".to_owned(),
        "a=rtpmap:111 opus/48000/2".to_owned(),
        "a=rtcp-fb:111 transport-cc".to_owned(),
        "a=fmtp:111 minptime=10;useinbandfec=1".to_owned(),
        "a=rtpmap:63 red/48000/2".to_owned(),
        "a=fmtp:63 111/111".to_owned(),
        "a=rtpmap:9 G722/8000".to_owned(),
        "a=rtpmap:0 PCMU/8000".to_owned(),
        "a=rtpmap:8 PCMA/8000".to_owned(),
        "a=rtpmap:13 CN/8000".to_owned(),
        "a=rtpmap:110 telephone-event/48000".to_owned(),
        "a=rtpmap:126 telephone-event/8000".to_owned(),
        format!("a=ssrc:{ssrc} cname:lg{ufrag}"),
        format!("a=ssrc:{ssrc} msid:stream audio0"),
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107".to_owned(),
        "c=IN IP4 0.0.0.0".to_owned(),
        "a=rtcp:9 IN IP4 0.0.0.0".to_owned(),
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{pwd}"),
        "a=ice-options:trickle".to_owned(),
        format!("a=fingerprint:sha-256 {}", fingerprint.join(":")),
        "a=setup:actpass".to_owned(),
        "a=mid:1".to_owned(),
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset".to_owned(),
        "a=extmap:13 urn:3gpp:video-orientation".to_owned(),
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay".to_owned(),
        "a=sendrecv".to_owned(),
        "a=msid:stream video0".to_owned(),
        "a=rtcp-mux".to_owned(),
        "a=rtcp-rsize".to_owned(),
    ]
    .into();
    lines.shrink_to_fit();
    lines
}

fn video_codec_block(pt: u32, rng: &mut impl Rng) -> Vec<String> {
    let codecs = [
        "VP8/90000",
        "VP9/90000",
        "H264/90000",
        "AV1/90000",
        "H265/90000",
    ];
    let codec = codecs.choose(rng).copied().unwrap_or("VP8/90000");
    let profile = format!("{:06x}", rng.random::<u32>() & 0xffffff);
    vec![
        format!("a=rtpmap:{pt} {codec}"),
        format!("a=rtcp-fb:{pt} goog-remb"),
        format!("a=rtcp-fb:{pt} transport-cc"),
        format!("a=rtcp-fb:{pt} ccm fir"),
        format!("a=rtcp-fb:{pt} nack"),
        format!("a=rtcp-fb:{pt} nack pli"),
        format!(
            "a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
        ),
        format!("a=rtpmap:{} rtx/90000", pt + 1),
        format!("a=fmtp:{} apt={pt}", pt + 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(seq: u64) -> Mark {
        Mark {
            room: 42,
            side: 1,
            seq,
            sent_ns: 123_456_789,
        }
    }

    #[test]
    fn marks_round_trip_through_every_message() {
        let script = Script::new(1, None);
        for seq in 0..20 {
            let text = script.render(&mark(seq));
            let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert!(value["type"].is_string());
            assert_eq!(Mark::find(&text), Some(mark(seq)), "{text}");
        }
    }

    #[test]
    fn realistic_sizes_mix_sdp_and_candidates() {
        let script = Script::new(0, None);
        let sdp = script.render(&mark(0));
        assert!(
            sdp.starts_with(r#"{"sdp":"v=0\r\n"#) || sdp.contains(r#""type":"webrtc_offer""#),
            "{sdp}"
        );
        assert!(
            (SDP_MIN_BYTES - 64..=SDP_MAX_BYTES + 64).contains(&sdp.len()),
            "{}",
            sdp.len()
        );
        let candidate = script.render(&mark(1));
        assert!(candidate.contains(r#""type":"ice_candidate""#));
        assert!(
            (150..=300).contains(&candidate.len()),
            "{}",
            candidate.len()
        );
    }

    #[test]
    fn forced_sizes_are_met() {
        for size in [200, 2048, 4096] {
            let script = Script::new(0, Some(size));
            for seq in 0..10 {
                let len = script.render(&mark(seq)).len();
                assert!(len.abs_diff(size) <= 16, "size {size}: got {len}");
            }
        }
    }

    #[test]
    fn garbage_has_no_mark() {
        assert_eq!(Mark::find("lgmark:12"), None);
        assert_eq!(Mark::find(r#"{"type":"pong"}"#), None);
    }
}
