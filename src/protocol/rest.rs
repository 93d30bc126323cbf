//! REST request and response bodies of the pairing API.
//!
//! Requests are parsed by hand from a JSON object rather than derived, because the contract names
//! the failure per field and in a fixed order: a required field that is absent, null or `""` is
//! `missing_<field>`, one of the wrong type or shape is `invalid_<field>`, checked in the order the
//! fields are listed.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ids::{DeviceId, JoinCode, RoomId};

/// A JSON request body.
pub type Object = Map<String, Value>;

/// Longest code lifetime a client may ask for with `expiresInSeconds` (one day).
pub const MAX_EXPIRES_IN_SECONDS: u64 = 86_400;

/// Most device ids one purge request may name.
pub const MAX_PURGE_IDS: usize = 100;

/// A field that failed validation, by name as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// Absent, null or empty: `missing_<field>`.
    Missing(&'static str),
    /// Present but of the wrong type or shape: `invalid_<field>`.
    Invalid(&'static str),
}

impl FieldError {
    /// The wire error code, such as `missing_client1`.
    pub fn code(&self) -> String {
        match self {
            Self::Missing(f) => format!("missing_{f}"),
            Self::Invalid(f) => format!("invalid_{f}"),
        }
    }
}

/// A field's value, or `None` when it is absent, null or the empty string.
fn present<'a>(body: &'a Object, name: &str) -> Option<&'a Value> {
    match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

/// A required string field parsed as an id.
fn required<T, E>(
    body: &Object,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, FieldError> {
    let value = present(body, name).ok_or(FieldError::Missing(name))?;
    let s = value.as_str().ok_or(FieldError::Invalid(name))?;
    parse(s).map_err(|_| FieldError::Invalid(name))
}

/// `POST /api/rooms`: client1 creates a pending code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePending {
    /// The code asked for, or `None` for a server-generated one.
    pub joinid: Option<JoinCode>,
    /// When the code stops being accepted.
    pub exp: DateTime<Utc>,
    /// The creating device.
    pub client1: DeviceId,
    /// Devices the room admits, client1 included (2 unless asked).
    pub capacity: u32,
}

/// Capacity of a room whose creator asked for none: two devices, as always.
pub const DEFAULT_CAPACITY: u32 = 2;

/// A room capacity as a field: an integer from 2 to `max`; absent means `default`.
pub fn parse_capacity(
    body: &Object,
    max: u32,
    default: Option<u32>,
) -> Result<Option<u32>, FieldError> {
    match present(body, "capacity") {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (2..=u64::from(max)).contains(n))
            .map(|n| Some(n as u32))
            .ok_or(FieldError::Invalid("capacity")),
    }
}

impl CreatePending {
    /// Parses the body. `exp` must lie after `now` and at most `max_ttl` beyond it; `capacity`
    /// from 2 to `max_capacity`.
    pub fn parse(
        body: &Object,
        now: DateTime<Utc>,
        max_ttl: std::time::Duration,
        max_capacity: u32,
    ) -> Result<Self, FieldError> {
        let joinid = match present(body, "joinid") {
            None => None,
            Some(v) => {
                let s = v.as_str().ok_or(FieldError::Invalid("joinid"))?;
                Some(JoinCode::parse(s).map_err(|_| FieldError::Invalid("joinid"))?)
            }
        };
        let max_ttl = chrono::Duration::from_std(max_ttl).unwrap_or(chrono::Duration::MAX);
        let exp = match present(body, "expiresInSeconds") {
            Some(v) => {
                let invalid = FieldError::Invalid("expiresInSeconds");
                let secs = v
                    .as_u64()
                    .filter(|s| (1..=MAX_EXPIRES_IN_SECONDS).contains(s))
                    .ok_or(invalid)?;
                let ttl = chrono::Duration::seconds(secs as i64);
                if ttl > max_ttl {
                    return Err(invalid);
                }
                now + ttl
            }
            None => {
                let v = present(body, "exp").ok_or(FieldError::Missing("exp"))?;
                let invalid = FieldError::Invalid("exp");
                let exp = v.as_str().and_then(parse_instant).ok_or(invalid)?;
                if exp <= now || exp - now > max_ttl {
                    return Err(invalid);
                }
                exp
            }
        };
        let client1 = required(body, "client1", DeviceId::parse)?;
        let capacity =
            parse_capacity(body, max_capacity, Some(DEFAULT_CAPACITY))?.unwrap_or(DEFAULT_CAPACITY);
        // Stored with millisecond precision; answer exactly what is stored.
        let exp = DateTime::from_timestamp_millis(exp.timestamp_millis()).unwrap_or(exp);
        Ok(Self {
            joinid,
            exp,
            client1,
            capacity,
        })
    }
}

/// An instant as clients send it: RFC 3339 with any offset, or `YYYY-MM-DD HH:MM:SS` taken as UTC
/// (the format SQLite's `CURRENT_TIMESTAMP` produces, which older clients send).
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// An instant as the API answers it: RFC 3339 in UTC with a `Z` and always three fraction
/// digits (`YYYY-MM-DDTHH:MM:SS.sssZ`), since clients parse it with a fixed format.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `POST /api/rooms/accept`: client2 accepts a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptCode {
    /// The code read from client1's screen.
    pub joinid: JoinCode,
    /// The accepting device.
    pub client2: DeviceId,
}

impl AcceptCode {
    /// Parses the body.
    pub fn parse(body: &Object) -> Result<Self, FieldError> {
        Ok(Self {
            joinid: required(body, "joinid", JoinCode::parse)?,
            client2: required(body, "client2", DeviceId::parse)?,
        })
    }
}

/// `POST /api/rooms/check`: client1 polls its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckCode {
    /// The code client1 created.
    pub joinid: JoinCode,
    /// The device that created it.
    pub client1: DeviceId,
}

impl CheckCode {
    /// Parses the body.
    pub fn parse(body: &Object) -> Result<Self, FieldError> {
        Ok(Self {
            joinid: required(body, "joinid", JoinCode::parse)?,
            client1: required(body, "client1", DeviceId::parse)?,
        })
    }
}

/// The `roomid` of `GET /api/rooms?roomid=` and `DELETE /api/rooms`, from a body or a query.
pub fn parse_room_id(fields: &Object) -> Result<RoomId, FieldError> {
    required(fields, "roomid", RoomId::parse)
}

/// `POST /api/user/purge`: the devices whose pairings are deleted.
pub fn parse_purge(body: &Object) -> Result<Vec<DeviceId>, FieldError> {
    let mut devices = Vec::new();
    if let Some(v) = present(body, "deviceIds") {
        let invalid = FieldError::Invalid("deviceIds");
        let list = v.as_array().ok_or(invalid)?;
        if list.is_empty() || list.len() > MAX_PURGE_IDS {
            return Err(invalid);
        }
        for item in list {
            let id = item.as_str().and_then(|s| DeviceId::parse(s).ok());
            devices.push(id.ok_or(invalid)?);
        }
    }
    if let Some(v) = present(body, "deviceId") {
        let id = v.as_str().and_then(|s| DeviceId::parse(s).ok());
        devices.push(id.ok_or(FieldError::Invalid("deviceId"))?);
    }
    if devices.is_empty() {
        return Err(FieldError::Missing("deviceId"));
    }
    devices.sort();
    devices.dedup();
    Ok(devices)
}

/// 201 answer to `POST /api/rooms`.
#[derive(Debug, Serialize)]
pub struct CreatedBody {
    /// Always true.
    pub ok: bool,
    /// The code, as asked for or as generated.
    pub joinid: String,
    /// Its expiry, RFC 3339 UTC.
    pub exp: String,
}

/// 200 answer of accept and check.
#[derive(Debug, Serialize)]
pub struct RoomIdBody {
    /// The paired room.
    pub roomid: String,
}

/// 200 answer to `GET /api/rooms?roomid=`.
#[derive(Debug, Serialize)]
pub struct RoomBody {
    /// The room id.
    pub roomid: String,
    /// The device that created the code.
    pub client1: String,
    /// The device that accepted it first.
    pub client2: String,
    /// Devices the room admits.
    pub capacity: u32,
    /// Every member device, in the order it joined the pairing (client1 first).
    pub members: Vec<String>,
}

/// 200 answer to `DELETE /api/rooms`.
#[derive(Debug, Serialize)]
pub struct DeletedBody {
    /// Always true.
    pub ok: bool,
    /// Rows deleted: 0 or 1.
    pub deleted: usize,
}

/// 200 answer to `POST /api/user/purge`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgedBody {
    /// Always true.
    pub ok: bool,
    /// Rooms deleted.
    pub rooms_deleted: usize,
    /// Pending codes deleted.
    pub pendings_deleted: usize,
}

/// Every error answer: `{"error": "<code>"}`, with an optional human-readable message.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// For people reading logs or curl output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    fn now() -> DateTime<Utc> {
        parse_instant("2026-06-01T12:00:00Z").unwrap()
    }

    #[test]
    fn both_exp_formats_parse_to_the_same_instant() {
        assert_eq!(
            parse_instant("2030-01-01T01:00:00+01:00"),
            parse_instant("2030-01-01 00:00:00")
        );
        assert_eq!(parse_instant("2030-01-01"), None);
    }

    #[test]
    fn fields_are_checked_in_the_listed_order() {
        let e = CreatePending::parse(&obj(json!({})), now(), DAY, 32).unwrap_err();
        assert_eq!(e, FieldError::Missing("exp"));
        let e = CreatePending::parse(&obj(json!({"joinid": 5})), now(), DAY, 32).unwrap_err();
        assert_eq!(e, FieldError::Invalid("joinid"));
        let e = CreatePending::parse(&obj(json!({"expiresInSeconds": 60})), now(), DAY, 32);
        assert_eq!(e.unwrap_err(), FieldError::Missing("client1"));
    }

    #[test]
    fn expires_in_seconds_wins_over_exp() {
        let body = obj(json!({"exp": "garbage", "expiresInSeconds": 60, "client1": "a"}));
        let req = CreatePending::parse(&body, now(), DAY, 32).unwrap();
        assert_eq!(req.exp, now() + chrono::Duration::seconds(60));
    }

    #[test]
    fn expires_in_seconds_must_be_an_integer_in_range() {
        for bad in [json!(0), json!(86_401), json!(1.5), json!("60"), json!(-1)] {
            let body = obj(json!({"expiresInSeconds": bad, "client1": "a"}));
            let e = CreatePending::parse(&body, now(), DAY, 32).unwrap_err();
            assert_eq!(e, FieldError::Invalid("expiresInSeconds"), "{bad}");
        }
    }

    #[test]
    fn exp_must_be_in_the_future_and_within_the_ttl() {
        for bad in ["2026-06-01T11:59:59Z", "2026-06-02T12:00:01Z", "soon"] {
            let body = obj(json!({"exp": bad, "client1": "a"}));
            let e = CreatePending::parse(&body, now(), DAY, 32).unwrap_err();
            assert_eq!(e, FieldError::Invalid("exp"), "{bad}");
        }
        let body = obj(json!({"exp": "2026-06-01 12:00:01", "client1": "a"}));
        assert!(CreatePending::parse(&body, now(), DAY, 32).is_ok());
    }

    #[test]
    fn empty_strings_count_as_missing() {
        let body = obj(json!({"joinid": "", "client2": "b"}));
        assert_eq!(
            AcceptCode::parse(&body).unwrap_err(),
            FieldError::Missing("joinid")
        );
    }

    #[test]
    fn purge_takes_one_id_or_a_list() {
        assert_eq!(
            parse_purge(&obj(json!({"deviceId": "a"}))).unwrap().len(),
            1
        );
        let ids = parse_purge(&obj(json!({"deviceIds": ["a", "b", "a"]}))).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            parse_purge(&obj(json!({}))).unwrap_err(),
            FieldError::Missing("deviceId")
        );
        for bad in [json!([]), json!("a"), json!([1]), json!(vec!["x"; 101])] {
            let e = parse_purge(&obj(json!({ "deviceIds": bad }))).unwrap_err();
            assert_eq!(e, FieldError::Invalid("deviceIds"));
        }
    }

    #[test]
    fn instants_are_answered_in_utc_with_z_and_milliseconds() {
        let t = parse_instant("2030-01-01T02:00:00+02:00").unwrap();
        assert_eq!(format_instant(t), "2030-01-01T00:00:00.000Z");
        let t = parse_instant("2030-01-01T00:00:00.256789Z").unwrap();
        assert_eq!(format_instant(t), "2030-01-01T00:00:00.256Z");
    }

    #[test]
    fn capacity_is_two_unless_asked_and_checked_against_the_maximum() {
        let body = |extra: Value| {
            let mut b = json!({"expiresInSeconds": 60, "client1": "a"});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            obj(b)
        };
        let parse = |b| CreatePending::parse(&b, now(), DAY, 8);
        assert_eq!(parse(body(json!({}))).unwrap().capacity, 2);
        assert_eq!(parse(body(json!({"capacity": null}))).unwrap().capacity, 2);
        assert_eq!(parse(body(json!({"capacity": 8}))).unwrap().capacity, 8);
        for bad in [
            json!(1),
            json!(9),
            json!(0),
            json!(-3),
            json!(2.5),
            json!("4"),
            json!(true),
        ] {
            assert_eq!(
                parse(body(json!({ "capacity": bad }))).unwrap_err(),
                FieldError::Invalid("capacity"),
                "{bad}"
            );
        }
    }
}
