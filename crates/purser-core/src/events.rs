//! Usage events as the platform's telemetry service (Polaris) sends them:
//! CloudEvents 1.0 in structured JSON mode, one at a time, in batches or as NDJSON.
//!
//! This module owns what a usage event *is* for Purser ([`UsageEvent`]), its identity
//! ([`EventKey`]) and how a request body becomes events ([`parse_batch`]). Billing
//! needs more than CloudEvents requires: `subject` (the account's external id) and
//! `time` (which hour the usage belongs to) are mandatory here, and `data` must be a
//! JSON object, because meters read their numbers from it.
//!
//! Each event of a body is judged on its own: a bad event is reported with its index
//! and the attribute at fault ([`EventRejection`]), and the good ones are kept, so one
//! malformed event never costs a producer a whole batch. Only a body that cannot be
//! read as its framing at all (broken JSON around the events, text that is not UTF-8)
//! is refused as a whole ([`BatchError`]).
//!
//! Parsing is single-pass and borrows from the body: attributes are read as borrowed
//! strings (owned only when they hold escapes), `data` is kept as its raw JSON text,
//! and owned values are built only for events found valid. Numbers in `data` are
//! never turned into floating point; meters read them exactly from that text
//! (see [`crate::meter`]).

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The only CloudEvents version Purser reads.
pub const SPEC_VERSION: &str = "1.0";

/// An event's identity: a 128-bit digest of its `source` and `id`.
///
/// CloudEvents makes `source` + `id` the identity of an event: producers must keep the
/// pair unique for each distinct event, a resent event (after a timeout, say) may carry
/// the same pair, and consumers may treat events with identical `source` and `id` as
/// duplicates. `id` alone is only unique within its source (two clusters may both
/// number their events from 1), so both are hashed.
///
/// The key is SHA-256 over a length-prefixed encoding of the two strings (so
/// `("ab", "c")` and `("a", "bc")` differ), truncated to 16 bytes: fixed-size keys index
/// and compare cheaply, and a collision needs about 2^64 distinct events. The encoding
/// is versioned so it can be recomputed with standard tools.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey([u8; 16]);

impl EventKey {
    /// The key of the event `id` from `source`.
    pub fn of(source: &str, id: &str) -> EventKey {
        let mut hasher = Sha256::new();
        hasher.update(b"purser-event-key-v1");
        hasher.update((source.len() as u64).to_be_bytes());
        hasher.update(source.as_bytes());
        hasher.update((id.len() as u64).to_be_bytes());
        hasher.update(id.as_bytes());
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        EventKey(key)
    }

    /// A key as stored (16 bytes).
    pub fn from_bytes(bytes: [u8; 16]) -> EventKey {
        EventKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Reads a key written by [`EventKey`]'s `Display` (32 hexadecimal digits).
    pub fn parse_hex(value: &str) -> Result<EventKey, String> {
        let mut key = [0u8; 16];
        hex::decode_to_slice(value, &mut key)
            .map_err(|_| format!("`{value}` is not an event key (32 hexadecimal digits)"))?;
        Ok(EventKey(key))
    }
}

impl AsRef<[u8]> for EventKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventKey({self})")
    }
}

impl Serialize for EventKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A valid usage event, owned.
///
/// Built only by [`parse_batch`], so every instance satisfies the rules: `id`,
/// `source`, `type` and `subject` non-empty, `source` a URI-reference, `specversion`
/// 1.0, `time` present, `data` a JSON object, `datacontenttype` (when given) JSON.
/// Extension attributes are not kept.
///
/// `time` is kept to the microsecond (finer digits are dropped), the precision storage
/// keeps, so an hour computed at ingest and one recomputed from stored events agree.
/// Serialising gives the event back in CloudEvents structured JSON, which
/// [`parse_batch`] reads again.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    /// `id`, `source`, `type`, `subject`, `datacontenttype` (empty when absent) and
    /// `data`, end to end: one allocation per event rather than six.
    text: Box<str>,
    /// Where each of the first five ends in `text`; `data` runs to the end.
    ends: [usize; 5],
    time: Timestamp,
    key: EventKey,
}

impl UsageEvent {
    fn part(&self, n: usize) -> &str {
        let start = match n.checked_sub(1) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(self.text.len()),
            None => 0,
        };
        let end = self.ends.get(n).copied().unwrap_or(self.text.len());
        self.text.get(start..end).unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        self.part(0)
    }

    pub fn source(&self) -> &str {
        self.part(1)
    }

    /// The CloudEvents `type` (`storage.capacity.sampled`): which meters read the event.
    pub fn event_type(&self) -> &str {
        self.part(2)
    }

    /// The account the usage belongs to, by its external id.
    pub fn subject(&self) -> &str {
        self.part(3)
    }

    /// When the usage happened (UTC, microsecond precision).
    pub fn time(&self) -> Timestamp {
        self.time
    }

    pub fn datacontenttype(&self) -> Option<&str> {
        Some(self.part(4)).filter(|t| !t.is_empty())
    }

    /// The event's payload, a JSON object, as the producer wrote it (its JSON text).
    pub fn data(&self) -> &str {
        self.part(5)
    }

    /// The identity used to recognise resent events (computed once, at parsing).
    pub fn key(&self) -> EventKey {
        self.key
    }
}

impl PartialEq for UsageEvent {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.ends == other.ends && self.time == other.time
    }
}

impl Eq for UsageEvent {}

impl Serialize for UsageEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Structured<'a> {
            specversion: &'a str,
            id: &'a str,
            source: &'a str,
            #[serde(rename = "type")]
            event_type: &'a str,
            subject: &'a str,
            time: Timestamp,
            #[serde(skip_serializing_if = "Option::is_none")]
            datacontenttype: Option<&'a str>,
            data: Box<RawValue>,
        }
        let data =
            RawValue::from_string(self.data().to_owned()).map_err(serde::ser::Error::custom)?;
        Structured {
            specversion: SPEC_VERSION,
            id: self.id(),
            source: self.source(),
            event_type: self.event_type(),
            subject: self.subject(),
            time: self.time,
            datacontenttype: self.datacontenttype(),
            data,
        }
        .serialize(serializer)
    }
}

/// How a request body holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One event, a JSON object (`application/cloudevents+json`).
    Single,
    /// A JSON array of events (`application/cloudevents-batch+json`); `[]` is a valid,
    /// empty batch.
    Batch,
    /// One event per line (`application/x-ndjson`, `application/jsonl`); blank lines
    /// are ignored.
    Ndjson,
    /// Plain `application/json`: a single event or a batch, told apart by the body's
    /// first non-whitespace byte (`{` or `[`).
    Json,
}

impl Framing {
    /// Its name as stored with a batch.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Single => "single",
            Framing::Batch => "batch",
            Framing::Ndjson => "ndjson",
            Framing::Json => "json",
        }
    }

    /// Reads a name written by [`Framing::as_str`].
    pub fn parse(value: &str) -> Result<Framing, String> {
        [
            Framing::Single,
            Framing::Batch,
            Framing::Ndjson,
            Framing::Json,
        ]
        .into_iter()
        .find(|f| f.as_str() == value)
        .ok_or_else(|| format!("`{value}` is not a framing (single, batch, ndjson, json)"))
    }

    /// The framing a `Content-Type` header announces; `None` for a media type Purser
    /// does not read, or a charset other than UTF-8. Case and parameters are ignored.
    pub fn from_content_type(content_type: &str) -> Option<Framing> {
        let mut parts = content_type.split(';');
        let media_type = parts.next()?.trim().to_ascii_lowercase();
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("charset")
            {
                let value = value.trim().trim_matches('"');
                if !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")) {
                    return None;
                }
            }
        }
        match media_type.as_str() {
            "application/cloudevents+json" => Some(Framing::Single),
            "application/cloudevents-batch+json" => Some(Framing::Batch),
            "application/x-ndjson" | "application/jsonl" => Some(Framing::Ndjson),
            "application/json" => Some(Framing::Json),
            _ => None,
        }
    }
}

/// One problem with one event of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventRejection {
    /// The event's position in the body, from 0 (for NDJSON, blank lines not counted).
    pub index: usize,
    /// The CloudEvents attribute at fault (`time`, `data`); absent when the event as a
    /// whole is unreadable (not an object, a broken NDJSON line).
    pub field: Option<String>,
    /// Why, in a sentence the producer can act on.
    pub reason: String,
}

impl EventRejection {
    pub fn new(index: usize, field: Option<&str>, reason: impl Into<String>) -> EventRejection {
        EventRejection {
            index,
            field: field.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// What a body held: its valid events with their index, and every problem found in
/// the others. An event with several wrong attributes has one rejection per attribute,
/// all with its index; rejections are in index order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedBatch {
    pub events: Vec<(usize, UsageEvent)>,
    pub rejected: Vec<EventRejection>,
}

impl ParsedBatch {
    /// How many events were refused (not how many problems were found).
    pub fn n_rejected_events(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for rejection in &self.rejected {
            if last != Some(rejection.index) {
                n += 1;
                last = Some(rejection.index);
            }
        }
        n
    }
}

/// A body that cannot be read as its framing at all; nothing in it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is not UTF-8 text: invalid byte at offset {offset} (line {line})")]
    NotUtf8 { offset: usize, line: usize },
    #[error("the body is empty; expected {expected}")]
    Empty { expected: &'static str },
    #[error("the body is not {expected}: it starts with {found}")]
    WrongShape {
        expected: &'static str,
        found: String,
    },
    #[error(
        "the body is not valid JSON: {message} at line {line}, column {column} (byte offset {offset})"
    )]
    Syntax {
        message: String,
        line: usize,
        column: usize,
        offset: usize,
    },
}

/// Reads the events of a request body.
///
/// Every event is checked on its own; see [`ParsedBatch`] and [`BatchError`] for what
/// is accepted, what is refused per event and what refuses the whole body. For NDJSON
/// a broken or non-UTF-8 line refuses only that line's event.
pub fn parse_batch(body: &[u8], framing: Framing) -> Result<ParsedBatch, BatchError> {
    match framing {
        Framing::Ndjson => Ok(parse_ndjson(body)),
        Framing::Single => parse_single(utf8(body)?),
        Framing::Batch => parse_array(utf8(body)?),
        Framing::Json => {
            let text = utf8(body)?;
            match first_byte(text) {
                Some(b'[') => parse_array(text),
                Some(b'{') => parse_single(text),
                None => Err(BatchError::Empty {
                    expected: "an event (a JSON object) or a batch (a JSON array)",
                }),
                Some(_) => Err(BatchError::WrongShape {
                    expected: "an event (a JSON object) or a batch (a JSON array)",
                    found: describe_start(text),
                }),
            }
        }
    }
}

fn utf8(body: &[u8]) -> Result<&str, BatchError> {
    std::str::from_utf8(body).map_err(|e| {
        let offset = e.valid_up_to();
        BatchError::NotUtf8 {
            offset,
            line: 1 + body[..offset].iter().filter(|&&b| b == b'\n').count(),
        }
    })
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|b| !b.is_ascii_whitespace())
}

fn describe_start(text: &str) -> String {
    let start: String = text.trim_start().chars().take(20).collect();
    format!("`{start}`")
}

fn syntax_error(text: &str, error: &serde_json::Error) -> BatchError {
    let (line, column) = (error.line(), error.column());
    let line_start = if line <= 1 {
        0
    } else {
        text.bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    BatchError::Syntax {
        message: bare_message(error),
        line,
        column,
        offset: (line_start + column.saturating_sub(1)).min(text.len()),
    }
}

/// serde_json's message without its " at line L column C" suffix.
fn bare_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rsplit_once(" at line ") {
        Some((bare, _)) => bare.to_owned(),
        None => message,
    }
}

fn parse_single(text: &str) -> Result<ParsedBatch, BatchError> {
    match first_byte(text) {
        Some(b'{') => {}
        None => {
            return Err(BatchError::Empty {
                expected: "an event (a JSON object)",
            });
        }
        Some(_) => {
            return Err(BatchError::WrongShape {
                expected: "an event (a JSON object)",
                found: describe_start(text),
            });
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = WireEvent::deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed))
        .map_err(|e| syntax_error(text, &e))?;
    let mut out = ParsedBatch::default();
    accept(0, parsed, &mut out);
    Ok(out)
}

fn parse_array(text: &str) -> Result<ParsedBatch, BatchError> {
    const EXPECTED: &str = "a batch of events (a JSON array)";
    match first_byte(text) {
        Some(b'[') => {}
        None => return Err(BatchError::Empty { expected: EXPECTED }),
        Some(_) => {
            return Err(BatchError::WrongShape {
                expected: EXPECTED,
                found: describe_start(text),
            });
        }
    }
    let mut out = ParsedBatch::default();
    // Telemetry events are a few hundred bytes; a guess spares most regrowth.
    out.events.reserve(text.len() / 256);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_seq(BatchVisitor { out: &mut out })
        .and_then(|()| deserializer.end())
        .map_err(|e| syntax_error(text, &e))?;
    Ok(out)
}

fn parse_ndjson(body: &[u8]) -> ParsedBatch {
    let mut out = ParsedBatch::default();
    // Telemetry events are a few hundred bytes; a guess spares most regrowth.
    out.events.reserve(body.len() / 256);
    let mut index = 0;
    let mut line = |line_number: usize, line: Result<&str, usize>| {
        let blank = match line {
            Ok(text) => text.bytes().all(|b| b.is_ascii_whitespace()),
            Err(_) => false,
        };
        if blank {
            return;
        }
        let event_index = index;
        index += 1;
        let whole_line = |reason: String| EventRejection {
            index: event_index,
            field: None,
            reason,
        };
        let text = match line {
            Ok(text) => text,
            Err(column) => {
                out.rejected.push(whole_line(format!(
                    "line {line_number} is not UTF-8 text (invalid byte at column {column})"
                )));
                return;
            }
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        match WireEvent::deserialize(&mut deserializer)
            .and_then(|parsed| deserializer.end().map(|()| parsed))
        {
            Ok(parsed) => accept(event_index, parsed, &mut out),
            Err(e) => out.rejected.push(whole_line(format!(
                "line {line_number} is not valid JSON: {} at column {}",
                bare_message(&e),
                e.column()
            ))),
        }
    };
    match std::str::from_utf8(body) {
        // The common case: split the text (a vectorised search for newlines).
        Ok(text) => {
            for (line_number, text) in (1..).zip(text.split('\n')) {
                line(line_number, Ok(text));
            }
        }
        // Otherwise only the lines holding invalid bytes are lost.
        Err(_) => {
            for (line_number, bytes) in (1..).zip(body.split(|&b| b == b'\n')) {
                line(
                    line_number,
                    std::str::from_utf8(bytes).map_err(|e| e.valid_up_to() + 1),
                );
            }
        }
    }
    out
}

struct BatchVisitor<'o> {
    out: &'o mut ParsedBatch,
}

impl<'de> Visitor<'de> for BatchVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(parsed) = seq.next_element::<WireEvent<'de>>()? {
            accept(index, parsed, self.out);
            index += 1;
        }
        Ok(())
    }
}

/// An attribute's value as found: a string (borrowed from the body unless it held
/// escapes), or the kind of JSON value that was there instead.
enum Attr<'a> {
    Text(Cow<'a, str>),
    Null,
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Attr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AttrVisitor)
    }
}

/// Accepts any JSON value without failing: a string as text, anything else (consumed)
/// as its kind, so a wrongly typed attribute is reported by name.
struct AttrVisitor;

impl<'de> Visitor<'de> for AttrVisitor {
    type Value = Attr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Attr::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Attr::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Attr::Text(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Attr::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Attr::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Attr::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Attr::Other("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Attr::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Attr::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Attr::Other("an object"))
    }
}

/// The attributes Purser reads; anything else is an extension and skipped.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Source,
    SpecVersion,
    Type,
    Subject,
    Time,
    DataContentType,
    Data,
    DataBase64,
    Other,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Source => "source",
            Field::SpecVersion => "specversion",
            Field::Type => "type",
            Field::Subject => "subject",
            Field::Time => "time",
            Field::DataContentType => "datacontenttype",
            Field::Data => "data",
            Field::DataBase64 => "data_base64",
            Field::Other => "",
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "id" => Field::Id,
                    "source" => Field::Source,
                    "specversion" => Field::SpecVersion,
                    "type" => Field::Type,
                    "subject" => Field::Subject,
                    "time" => Field::Time,
                    "datacontenttype" => Field::DataContentType,
                    "data" => Field::Data,
                    "data_base64" => Field::DataBase64,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// One element of a body as read, before validation. Reading it never fails on
/// content (only on broken JSON), so one bad event cannot stop the others.
enum WireEvent<'a> {
    Object(WireAttributes<'a>),
    NotAnObject(&'static str),
}

#[derive(Default)]
struct WireAttributes<'a> {
    id: Option<Attr<'a>>,
    source: Option<Attr<'a>>,
    specversion: Option<Attr<'a>>,
    event_type: Option<Attr<'a>>,
    subject: Option<Attr<'a>>,
    time: Option<Attr<'a>>,
    datacontenttype: Option<Attr<'a>>,
    data: Option<&'a RawValue>,
    data_base64: bool,
    repeated: Vec<&'static str>,
}

impl<'de> Deserialize<'de> for WireEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = WireEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = WireAttributes::default();
        while let Some(field) = map.next_key::<Field>()? {
            let slot = match field {
                Field::Id => &mut event.id,
                Field::Source => &mut event.source,
                Field::SpecVersion => &mut event.specversion,
                Field::Type => &mut event.event_type,
                Field::Subject => &mut event.subject,
                Field::Time => &mut event.time,
                Field::DataContentType => &mut event.datacontenttype,
                Field::Data => {
                    let data = map.next_value::<&'de RawValue>()?;
                    if event.data.replace(data).is_some() {
                        event.repeated.push(field.name());
                    }
                    continue;
                }
                Field::DataBase64 => {
                    map.next_value::<IgnoredAny>()?;
                    event.data_base64 = true;
                    continue;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<Attr<'de>>()?;
            if slot.replace(value).is_some() {
                event.repeated.push(field.name());
            }
        }
        Ok(WireEvent::Object(event))
    }

    // Anything but an object is consumed and reported by its kind.
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a string"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireEvent::NotAnObject("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(WireEvent::NotAnObject("an array"))
    }
}

/// Collects the problems of one event.
struct Check<'o> {
    index: usize,
    rejected: &'o mut Vec<EventRejection>,
    failed: bool,
}

impl Check<'_> {
    fn reject(&mut self, field: Option<&str>, reason: impl Into<String>) {
        self.failed = true;
        self.rejected.push(EventRejection {
            index: self.index,
            field: field.map(str::to_owned),
            reason: reason.into(),
        });
    }

    /// A string attribute: `None` (with the problem recorded) when absent, null, not a
    /// string or empty. `absent` says why it is required.
    fn text<'a>(
        &mut self,
        field: &str,
        value: Option<Attr<'a>>,
        absent: &str,
    ) -> Option<Cow<'a, str>> {
        match value {
            None | Some(Attr::Null) => {
                self.reject(Some(field), absent);
                None
            }
            Some(Attr::Other(kind)) => {
                self.reject(Some(field), format!("must be a string, not {kind}"));
                None
            }
            Some(Attr::Text(text)) if text.is_empty() => {
                self.reject(Some(field), "may not be empty");
                None
            }
            Some(Attr::Text(text)) => Some(text),
        }
    }
}

/// Validates one element and files it as an event or as rejections.
fn accept(index: usize, parsed: WireEvent<'_>, out: &mut ParsedBatch) {
    let mut check = Check {
        index,
        rejected: &mut out.rejected,
        failed: false,
    };
    let wire = match parsed {
        WireEvent::Object(wire) => wire,
        WireEvent::NotAnObject(kind) => {
            check.reject(None, format!("an event is a JSON object, not {kind}"));
            return;
        }
    };
    for name in &wire.repeated {
        check.reject(
            Some(name),
            "appears more than once; an attribute has one value",
        );
    }
    let id = check.text("id", wire.id, "is required");
    let source = check.text(
        "source",
        wire.source,
        "is required (a URI-reference naming the producer)",
    );
    if let Some(source) = &source
        && let Err(reason) = check_uri_reference(source)
    {
        check.reject(Some("source"), reason);
    }
    if let Some(version) = check.text(
        "specversion",
        wire.specversion,
        "is required and must be `1.0`",
    ) && version != SPEC_VERSION
    {
        check.reject(
            Some("specversion"),
            format!("must be `1.0` (CloudEvents 1.0), not `{version}`"),
        );
    }
    let event_type = check.text("type", wire.event_type, "is required");
    let subject = check.text(
        "subject",
        wire.subject,
        "is required: it names the account (its external id) the usage is billed to",
    );
    let time = check
        .text(
            "time",
            wire.time,
            "is required: billing places each event in the hour it happened",
        )
        .and_then(|text| match parse_rfc3339(&text) {
            Ok(time) => Some(time),
            Err(reason) => {
                check.reject(Some("time"), reason);
                None
            }
        });
    let datacontenttype = match wire.datacontenttype {
        None | Some(Attr::Null) => None,
        other => check.text("datacontenttype", other, "").and_then(|value| {
            if is_json_media_type(&value) {
                Some(value)
            } else {
                check.reject(
                    Some("datacontenttype"),
                    format!(
                        "must be `application/json` or a `+json` type when given, not `{value}`"
                    ),
                );
                None
            }
        }),
    };
    if wire.data_base64 {
        check.reject(
            Some("data_base64"),
            "binary data is not accepted: usage is read from `data`, a JSON object",
        );
    }
    let data = match wire.data {
        Some(raw) if raw.get().starts_with('{') => Some(raw),
        None => {
            check.reject(Some("data"), "is required: a JSON object holding the usage");
            None
        }
        Some(raw) => {
            check.reject(
                Some("data"),
                format!("must be a JSON object, not {}", json_kind(raw.get())),
            );
            None
        }
    };
    if check.failed {
        return;
    }
    if let (Some(id), Some(source), Some(event_type), Some(subject), Some(time), Some(data)) =
        (id, source, event_type, subject, time, data)
    {
        let key = EventKey::of(&source, &id);
        let datacontenttype = datacontenttype.unwrap_or_default();
        let parts = [&*id, &*source, &*event_type, &*subject, &*datacontenttype];
        let mut text =
            String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + data.get().len());
        let mut ends = [0; 5];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            *end = text.len();
        }
        text.push_str(data.get());
        out.events.push((
            index,
            UsageEvent {
                text: text.into_boxed_str(),
                ends,
                time,
                key,
            },
        ));
    }
}

/// The kind of a JSON value, from its (valid) text.
pub(crate) fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// `application/json`, or any `…+json` type, parameters ignored.
fn is_json_media_type(value: &str) -> bool {
    let media_type = value.split(';').next().unwrap_or("").trim();
    let bytes = media_type.as_bytes();
    media_type.eq_ignore_ascii_case("application/json")
        || (media_type.contains('/')
            && bytes.len() > 5
            && bytes[bytes.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// RFC 3986's character rules for a URI-reference: only its characters, and `%` only
/// as the start of a percent-encoded octet. The structure (scheme, authority, path) is
/// not checked: any string of these characters is a relative reference at worst.
fn check_uri_reference(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let valid = bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !valid {
                return Err(format!(
                    "is not a URI-reference: `%` at position {i} does not start a percent-encoded byte"
                ));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
        if !allowed {
            let c = value[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "is not a URI-reference: {c:?} at position {i} must be percent-encoded"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// An RFC 3339 timestamp (`2026-11-16T10:05:00Z`, `…T10:05:00.123+01:00`) as a UTC
/// instant truncated to the microsecond. The shape is checked strictly first (jiff
/// alone reads a wider ISO 8601 family); `t`, `z` and more than nine fractional
/// digits are allowed, as RFC 3339 allows them.
pub(crate) fn parse_rfc3339(value: &str) -> Result<Timestamp, String> {
    let invalid = || {
        format!(
            "`{value}` is not an RFC 3339 timestamp (e.g. 2026-11-16T10:05:00Z or 2026-11-16T11:05:00.5+01:00)"
        )
    };
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
    };
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !shape {
        return Err(invalid());
    }
    let mut end_of_seconds = 19;
    let mut fraction_digits = 0;
    if b.get(19) == Some(&b'.') {
        fraction_digits = b[20..].iter().take_while(|d| d.is_ascii_digit()).count();
        if fraction_digits == 0 {
            return Err(invalid());
        }
        end_of_seconds = 20 + fraction_digits;
    }
    let offset = &value[end_of_seconds..];
    let offset_ok = offset.eq_ignore_ascii_case("z")
        || (offset.len() == 6
            && matches!(offset.as_bytes()[0], b'+' | b'-')
            && digits(end_of_seconds + 1..end_of_seconds + 3)
            && offset.as_bytes()[3] == b':'
            && digits(end_of_seconds + 4..end_of_seconds + 6));
    if !offset_ok {
        return Err(invalid());
    }
    let needs_rewrite = b[10] == b't' || offset == "z" || fraction_digits > 9 || offset == "-00:00";
    let parsed = if needs_rewrite {
        // Upper-case separators, at most nanoseconds (finer digits would be dropped by
        // the truncation below anyway), and RFC 3339's "-00:00" (UTC, local offset
        // unknown) as plain UTC.
        let fraction = if fraction_digits > 0 {
            &value[19..20 + fraction_digits.min(9)]
        } else {
            ""
        };
        let offset = if offset.eq_ignore_ascii_case("z") || offset == "-00:00" {
            "Z"
        } else {
            offset
        };
        format!("{}T{}{fraction}{offset}", &value[..10], &value[11..19]).parse::<Timestamp>()
    } else {
        value.parse::<Timestamp>()
    };
    let time = parsed.map_err(|e| format!("{}: {e}", invalid()))?;
    Timestamp::from_microsecond(time.as_microsecond()).map_err(|e| format!("{}: {e}", invalid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"specversion":"1.0","id":"c-00001-1","source":"polaris://us-east-1/clusters/c-00001","type":"storage.capacity.sampled","subject":"acme-prod","time":"2026-11-16T10:05:03Z","datacontenttype":"application/json","data":{"cluster_id":"c-00001","bytes_stored":1099511627776}}"#;

    fn event_with(field: &str, value: &str) -> String {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GOOD).expect("object");
        if value == "<absent>" {
            object.remove(field);
        } else {
            object.insert(field.into(), serde_json::from_str(value).expect("json"));
        }
        serde_json::to_string(&object).expect("json")
    }

    fn rejections(batch: &ParsedBatch) -> Vec<(usize, Option<&str>)> {
        batch
            .rejected
            .iter()
            .map(|r| (r.index, r.field.as_deref()))
            .collect()
    }

    #[test]
    fn a_single_event_is_read_whole() {
        let batch = parse_batch(GOOD.as_bytes(), Framing::Single).expect("readable");
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let (index, event) = &batch.events[0];
        assert_eq!(*index, 0);
        assert_eq!(event.id(), "c-00001-1");
        assert_eq!(event.source(), "polaris://us-east-1/clusters/c-00001");
        assert_eq!(event.event_type(), "storage.capacity.sampled");
        assert_eq!(event.subject(), "acme-prod");
        assert_eq!(
            event.time(),
            "2026-11-16T10:05:03Z".parse::<Timestamp>().expect("ts")
        );
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(
            event.data(),
            r#"{"cluster_id":"c-00001","bytes_stored":1099511627776}"#
        );
        assert_eq!(
            event.key(),
            EventKey::of("polaris://us-east-1/clusters/c-00001", "c-00001-1")
        );
    }

    #[test]
    fn a_batch_is_an_array_of_events() {
        let body = format!("[{GOOD}, {}]", event_with("id", r#""c-00001-2""#));
        let batch = parse_batch(body.as_bytes(), Framing::Batch).expect("readable");
        assert!(batch.rejected.is_empty());
        let ids: Vec<_> = batch
            .events
            .iter()
            .map(|(i, e)| (*i, e.id().to_owned()))
            .collect();
        assert_eq!(ids, [(0, "c-00001-1".into()), (1, "c-00001-2".into())]);
        let empty = parse_batch(b" [ ] ", Framing::Batch).expect("readable");
        assert_eq!(empty, ParsedBatch::default());
    }

    #[test]
    fn ndjson_is_one_event_per_line_and_blank_lines_do_not_count() {
        let body = format!("{GOOD}\r\n\n   \n{}\n", event_with("id", r#""c-00001-2""#));
        let batch = parse_batch(body.as_bytes(), Framing::Ndjson).expect("readable");
        assert!(batch.rejected.is_empty());
        let indices: Vec<_> = batch.events.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1]);
        assert_eq!(
            parse_batch(b"", Framing::Ndjson).expect("readable"),
            ParsedBatch::default()
        );
    }

    #[test]
    fn plain_json_is_told_apart_by_its_first_byte() {
        let single = parse_batch(format!("\n {GOOD}").as_bytes(), Framing::Json).expect("ok");
        assert_eq!(single.events.len(), 1);
        let batch = parse_batch(format!("[{GOOD},{GOOD}]").as_bytes(), Framing::Json).expect("ok");
        assert_eq!(batch.events.len(), 2);
        assert!(matches!(
            parse_batch(b"42", Framing::Json),
            Err(BatchError::WrongShape { .. })
        ));
        assert!(matches!(
            parse_batch(b"  ", Framing::Json),
            Err(BatchError::Empty { .. })
        ));
    }

    #[test]
    fn content_types_choose_the_framing() {
        for (content_type, framing) in [
            ("application/cloudevents+json", Some(Framing::Single)),
            (
                "application/cloudevents-batch+json; charset=UTF-8",
                Some(Framing::Batch),
            ),
            ("Application/X-NDJSON", Some(Framing::Ndjson)),
            ("application/jsonl", Some(Framing::Ndjson)),
            ("application/json;charset=\"utf-8\"", Some(Framing::Json)),
            ("application/json; charset=latin1", None),
            ("text/plain", None),
            ("", None),
        ] {
            assert_eq!(
                Framing::from_content_type(content_type),
                framing,
                "{content_type}"
            );
        }
    }

    #[test]
    fn each_bad_event_is_named_by_index_and_field_and_good_ones_are_kept() {
        let body = format!(
            "[{}, {GOOD}, {}, {}, {}, {}, {}]",
            event_with("id", "<absent>"),
            event_with("specversion", r#""0.3""#),
            event_with("time", r#""2026-11-16 10:05:03""#),
            event_with("data", "[1,2]"),
            event_with("subject", "<absent>"),
            event_with("id", r#""c-00001-7""#),
        );
        let batch = parse_batch(body.as_bytes(), Framing::Batch).expect("readable");
        assert_eq!(
            rejections(&batch),
            [
                (0, Some("id")),
                (2, Some("specversion")),
                (3, Some("time")),
                (4, Some("data")),
                (5, Some("subject")),
            ]
        );
        let kept: Vec<_> = batch.events.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [1, 6]);
        assert_eq!(batch.n_rejected_events(), 5);
        assert!(batch.rejected[1].reason.contains("`0.3`"));
        assert!(batch.rejected[2].reason.contains("RFC 3339"));
        assert!(batch.rejected[3].reason.contains("not an array"));
    }

    #[test]
    fn every_wrong_attribute_of_one_event_is_reported() {
        let body = r#"{"id":"","source":"has space","specversion":1.0,"type":null,
            "subject":"acme","time":"2026-13-01T00:00:00Z","datacontenttype":"text/xml",
            "data_base64":"AAAA"}"#;
        let batch = parse_batch(body.as_bytes(), Framing::Single).expect("readable");
        assert_eq!(
            rejections(&batch),
            [
                (0, Some("id")),
                (0, Some("source")),
                (0, Some("specversion")),
                (0, Some("type")),
                (0, Some("time")),
                (0, Some("datacontenttype")),
                (0, Some("data_base64")),
                (0, Some("data")),
            ]
        );
        assert_eq!(batch.n_rejected_events(), 1);
        assert_eq!(batch.rejected[2].reason, "must be a string, not a number");
    }

    #[test]
    fn repeated_attributes_and_non_objects_are_rejected() {
        let repeated = GOOD.replacen('{', r#"{"id":"first","#, 1);
        let body = format!("[{repeated}, 7, null, \"event\"]");
        let batch = parse_batch(body.as_bytes(), Framing::Batch).expect("readable");
        assert_eq!(
            rejections(&batch),
            [(0, Some("id")), (1, None), (2, None), (3, None)]
        );
        assert_eq!(
            batch.rejected[1].reason,
            "an event is a JSON object, not a number"
        );
    }

    #[test]
    fn a_broken_ndjson_line_rejects_only_its_event() {
        let body = format!(
            "{GOOD}\n{{\"id\": \"x\",\n\n[1]\n{}",
            event_with("id", r#""b""#)
        );
        let batch = parse_batch(body.as_bytes(), Framing::Ndjson).expect("readable");
        assert_eq!(rejections(&batch), [(1, None), (2, None)]);
        assert!(
            batch.rejected[0]
                .reason
                .starts_with("line 2 is not valid JSON"),
            "{}",
            batch.rejected[0].reason
        );
        let kept: Vec<_> = batch.events.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [0, 3]);
    }

    #[test]
    fn a_broken_body_is_one_error_with_its_position() {
        let body = format!("[{GOOD},\n {{\"id\": }}]");
        match parse_batch(body.as_bytes(), Framing::Batch) {
            Err(BatchError::Syntax {
                line,
                column,
                offset,
                ..
            }) => {
                assert_eq!(line, 2);
                assert_eq!(column, 9);
                assert_eq!(body.as_bytes()[offset], b'}');
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        let truncated = &GOOD[..GOOD.len() - 3];
        assert!(matches!(
            parse_batch(truncated.as_bytes(), Framing::Single),
            Err(BatchError::Syntax { .. })
        ));
        assert!(matches!(
            parse_batch(format!("{GOOD} {GOOD}").as_bytes(), Framing::Single),
            Err(BatchError::Syntax { .. })
        ));
        assert!(matches!(
            parse_batch(GOOD.as_bytes(), Framing::Batch),
            Err(BatchError::WrongShape { .. })
        ));
        let message = parse_batch(b"[1,", Framing::Batch)
            .expect_err("broken")
            .to_string();
        assert!(
            message.starts_with("the body is not valid JSON"),
            "{message}"
        );
    }

    #[test]
    fn invalid_utf8_is_refused_clearly() {
        let mut body = format!("[{GOOD},\n").into_bytes();
        let offset = body.len();
        body.extend_from_slice(b"\xff]");
        match parse_batch(&body, Framing::Batch) {
            Err(error @ BatchError::NotUtf8 { .. }) => {
                assert_eq!(error, BatchError::NotUtf8 { offset, line: 2 });
                assert!(error.to_string().contains("not UTF-8"));
            }
            other => panic!("expected NotUtf8, got {other:?}"),
        }
        // In NDJSON only the line is lost.
        let mut body = format!("{GOOD}\n").into_bytes();
        body.extend_from_slice(b"{\"id\":\"\xc3\x28\"}\n");
        body.extend_from_slice(GOOD.as_bytes());
        let batch = parse_batch(&body, Framing::Ndjson).expect("readable");
        assert_eq!(rejections(&batch), [(1, None)]);
        assert!(batch.rejected[0].reason.contains("line 2 is not UTF-8"));
        assert_eq!(batch.events.len(), 2);
    }

    #[test]
    fn escaped_strings_are_read_as_their_text() {
        let body = GOOD
            .replace(r#""acme-prod""#, r#""ac\u006de-prod""#)
            .replace(r#""c-00001-1""#, r#""c-00001-\u0031""#)
            .replace(r#""subject""#, r#""sub\u006aect""#);
        let batch = parse_batch(body.as_bytes(), Framing::Single).expect("readable");
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let event = &batch.events[0].1;
        assert_eq!(event.subject(), "acme-prod");
        assert_eq!(event.id(), "c-00001-1");
        let plain = parse_batch(GOOD.as_bytes(), Framing::Single).expect("readable");
        assert_eq!(event.key(), plain.events[0].1.key());
    }

    #[test]
    fn extension_attributes_are_ignored() {
        let body = GOOD.replacen(
            '{',
            r#"{"traceparent":"00-abc","region":{"nested":[1,2,{"x":null}]},"partitionkey":7,"#,
            1,
        );
        let batch = parse_batch(body.as_bytes(), Framing::Single).expect("readable");
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let original = parse_batch(GOOD.as_bytes(), Framing::Single).expect("readable");
        assert_eq!(batch.events, original.events);
    }

    #[test]
    fn null_optional_attributes_are_absent_and_json_subtypes_are_accepted() {
        assert!(!is_json_media_type("application/é+jso"));
        assert!(!is_json_media_type("text/plain"));
        let batch = parse_batch(
            event_with("datacontenttype", "null").as_bytes(),
            Framing::Single,
        )
        .expect("readable");
        assert_eq!(batch.events[0].1.datacontenttype(), None);
        for accepted in [
            r#""application/json; charset=utf-8""#,
            r#""application/vnd.polaris.usage+json""#,
        ] {
            let batch = parse_batch(
                event_with("datacontenttype", accepted).as_bytes(),
                Framing::Single,
            )
            .expect("readable");
            assert!(batch.rejected.is_empty(), "{accepted}");
        }
    }

    #[test]
    fn times_follow_rfc_3339_and_keep_microseconds() {
        let ts = |s: &str| s.parse::<Timestamp>().expect("ts");
        assert_eq!(
            parse_rfc3339("2026-11-16T11:05:03.25+01:00"),
            Ok(ts("2026-11-16T10:05:03.25Z"))
        );
        assert_eq!(
            parse_rfc3339("2026-11-16t10:05:03z"),
            Ok(ts("2026-11-16T10:05:03Z"))
        );
        assert_eq!(
            parse_rfc3339("2026-11-16T10:05:03-00:00"),
            Ok(ts("2026-11-16T10:05:03Z"))
        );
        assert_eq!(
            parse_rfc3339("2026-11-16T10:05:03.1234567891234Z"),
            Ok(ts("2026-11-16T10:05:03.123456Z"))
        );
        for bad in [
            "2026-11-16",
            "2026-11-16T10:05Z",
            "2026-11-16 10:05:03Z",
            "2026-11-16T10:05:03",
            "2026-11-16T10:05:03.Z",
            "2026-11-16T10:05:03+0100",
            "2026-11-16T10:05:03Z[Europe/Paris]",
            "2026-02-30T10:05:03Z",
            "20261116T100503Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_uri_references() {
        assert!(check_uri_reference("polaris://us-east-1/clusters/c-1?x=%20").is_ok());
        assert!(check_uri_reference("/relative/ref#frag").is_ok());
        assert!(check_uri_reference("with space").is_err());
        assert!(check_uri_reference("bad%2").is_err());
        assert!(check_uri_reference("naïve").is_err());
    }

    #[test]
    fn keys_depend_on_source_and_id_unambiguously() {
        assert_eq!(EventKey::of("s", "1"), EventKey::of("s", "1"));
        assert_ne!(EventKey::of("s", "1"), EventKey::of("t", "1"));
        assert_ne!(EventKey::of("ab", "c"), EventKey::of("a", "bc"));
        let key = EventKey::of("s", "1");
        assert_eq!(EventKey::parse_hex(&key.to_string()), Ok(key));
        assert_eq!(key.to_string().len(), 32);
        assert!(EventKey::parse_hex("zz").is_err());
    }

    #[test]
    fn a_serialised_event_reads_back_the_same() {
        let batch = parse_batch(GOOD.as_bytes(), Framing::Single).expect("readable");
        let event = &batch.events[0].1;
        let json = serde_json::to_string(event).expect("serialise");
        let again = parse_batch(json.as_bytes(), Framing::Single).expect("readable");
        assert_eq!(&again.events[0].1, event);
    }
}
