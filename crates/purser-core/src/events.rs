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
//! and owned values are built only for events found valid, their texts end to end in
//! one buffer per body that the events share. Numbers in `data` are never turned into
//! floating point; meters read them exactly from that text (see [`crate::meter`]).
//!
//! Most events have one shape (an object of plain strings, `data` an object, times in
//! UTC): a scanner reads that shape directly, validating the JSON as it goes, and
//! indexes the top-level members of `data` so meters need not read it again. Whatever
//! it does not take (escapes, repeated or wrongly typed attributes, broken JSON, any
//! rule broken) goes to the general reader (serde_json), so results and messages are
//! the general reader's in every case; tests and the fuzzer check the two agree.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

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
        const VERSION: &[u8] = b"purser-event-key-v1";
        // The common case hashed from one buffer on the stack (one call rather than
        // five); longer pairs are fed in parts. Both hash the same bytes.
        let mut buffer = [0u8; 256];
        let parts: [&[u8]; 5] = [
            VERSION,
            &(source.len() as u64).to_be_bytes(),
            source.as_bytes(),
            &(id.len() as u64).to_be_bytes(),
            id.as_bytes(),
        ];
        let length: usize = parts.iter().map(|p| p.len()).sum();
        let digest = match buffer.get_mut(..length) {
            Some(encoding) => {
                let mut at = 0;
                for part in parts {
                    if let Some(slot) = encoding.get_mut(at..at + part.len()) {
                        slot.copy_from_slice(part);
                    }
                    at += part.len();
                }
                Sha256::digest(encoding)
            }
            None => {
                let mut hasher = Sha256::new();
                for part in parts {
                    hasher.update(part);
                }
                hasher.finalize()
            }
        };
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
///
/// The events of one body share one buffer holding their texts (one allocation per
/// body rather than per event; cloning an event shares it too), so an event kept
/// alone keeps its batch's text alive.
#[derive(Clone)]
pub struct UsageEvent {
    /// Set once the whole body is read; events are built as it is read, so they need
    /// not be built twice.
    shared: Arc<OnceLock<BatchText>>,
    layout: Layout,
}

/// The text of a body's valid events, shared by them.
#[derive(Default)]
struct BatchText {
    /// Each event's `id`, `source`, `type`, `subject`, `datacontenttype` (empty when
    /// absent) and `data`, end to end.
    text: String,
    /// The top-level members of the events' `data`, where the scanner indexed them.
    members: Vec<Member>,
}

/// Where one event's parts are in its [`BatchText`].
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Where `id` starts in the text.
    start: usize,
    /// Where `id`, `source`, `type`, `subject`, `datacontenttype` and `data` end.
    ends: [usize; 6],
    /// The range of its `data`'s members in the member table, when indexed.
    members: Option<(usize, usize)>,
    time: Timestamp,
    key: EventKey,
}

/// A top-level member of an event's `data`: the key's text (no escapes) and the
/// value's JSON text, as offsets from the start of `data`.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (u32, u32),
    value: (u32, u32),
}

/// What a key of an event's `data` holds, from the index built at parsing.
pub(crate) enum MemberLookup<'e> {
    /// The event's `data` was not indexed (it was read by the general parser): look
    /// in its text.
    Unindexed,
    Missing,
    Repeated,
    /// The value's JSON text.
    Found(&'e str),
}

impl UsageEvent {
    fn part(&self, n: usize) -> &str {
        let ends = &self.layout.ends;
        let start = match n.checked_sub(1) {
            Some(previous) => ends.get(previous).copied().unwrap_or(self.layout.start),
            None => self.layout.start,
        };
        let end = ends.get(n).copied().unwrap_or(start);
        self.shared
            .get()
            .and_then(|shared| shared.text.get(start..end))
            .unwrap_or_default()
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
        self.layout.time
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
        self.layout.key
    }

    /// The value of the top-level key `key` of `data`, from the index, so meters need
    /// not read `data` again.
    pub(crate) fn data_member(&self, key: &str) -> MemberLookup<'_> {
        let Some((first, last)) = self.layout.members else {
            return MemberLookup::Unindexed;
        };
        let data = self.data();
        let text = |(start, end): (u32, u32)| data.get(start as usize..end as usize);
        let mut found = None;
        let members = self.shared.get().map(|shared| &shared.members[..]);
        for member in members.and_then(|m| m.get(first..last)).unwrap_or_default() {
            let (start, end) = member.key;
            if end.checked_sub(start).map(|n| n as usize) != Some(key.len())
                || !text(member.key).is_some_and(|k| same_text(k.as_bytes(), key.as_bytes()))
            {
                continue;
            }
            if found.is_some() {
                return MemberLookup::Repeated;
            }
            found = text(member.value);
        }
        found.map_or(MemberLookup::Missing, MemberLookup::Found)
    }
}

/// Whether two texts are equal, compared a word at a time (overlapping words for the
/// ends) without a call to `memcmp`: the texts compared here (keys of `data`, the
/// openings of attributes) are short, where a call costs more than the comparison.
fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    let half = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map(u32::from_le_bytes)
    };
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

impl fmt::Debug for UsageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageEvent")
            .field("id", &self.id())
            .field("source", &self.source())
            .field("type", &self.event_type())
            .field("subject", &self.subject())
            .field("time", &self.time())
            .field("datacontenttype", &self.datacontenttype())
            .field("data", &self.data())
            .field("key", &self.key())
            .finish()
    }
}

impl PartialEq for UsageEvent {
    fn eq(&self, other: &Self) -> bool {
        (0..6).all(|n| self.part(n) == other.part(n)) && self.time() == other.time()
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
            time: self.time(),
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
    BatchReader::default().parse(body, framing)
}

/// [`parse_batch`] through the general JSON reader alone, without the scanner of the
/// common event shape: the reference the scanner is tested and fuzzed against (both
/// must give the same result for every body).
#[doc(hidden)]
pub fn parse_batch_general(body: &[u8], framing: Framing) -> Result<ParsedBatch, BatchError> {
    parse_with(body, framing, Reader::General, &mut Spare::default())
}

/// [`parse_batch`] for a stream of bodies: the buffers of a batch given back with
/// [`BatchReader::recycle`] hold the next one, so a long stream does not allocate
/// (and fault in) fresh memory for every body.
#[derive(Default)]
pub struct BatchReader {
    spare: Spare,
}

impl BatchReader {
    /// As [`parse_batch`].
    pub fn parse(&mut self, body: &[u8], framing: Framing) -> Result<ParsedBatch, BatchError> {
        parse_with(body, framing, Reader::Fast, &mut self.spare)
    }

    /// Takes back a batch's buffers for the next body. Its events' shared text is
    /// reused only if no clone of one of them is still held elsewhere.
    pub fn recycle(&mut self, batch: ParsedBatch) {
        let ParsedBatch {
            mut events,
            mut rejected,
        } = batch;
        let shared = events.first().map(|(_, event)| Arc::clone(&event.shared));
        events.clear();
        if let Some(Some(text)) = shared
            .and_then(|s| Arc::try_unwrap(s).ok())
            .map(OnceLock::into_inner)
        {
            self.spare.text = text;
        }
        rejected.clear();
        self.spare.events = events;
        self.spare.rejected = rejected;
    }
}

/// Buffers kept from one body to the next.
#[derive(Default)]
struct Spare {
    text: BatchText,
    events: Vec<(usize, UsageEvent)>,
    rejected: Vec<EventRejection>,
}

/// How events are read: the scanner of the common shape first (falling back to the
/// general reader for anything else), or the general reader alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Fast,
    General,
}

fn parse_with(
    body: &[u8],
    framing: Framing,
    reader: Reader,
    spare: &mut Spare,
) -> Result<ParsedBatch, BatchError> {
    let mut out = Builder::new(body.len(), spare);
    let read = match framing {
        Framing::Ndjson => {
            parse_ndjson(body, reader, &mut out);
            Ok(())
        }
        Framing::Single => utf8(body).and_then(|text| parse_single(text, reader, &mut out)),
        Framing::Batch => utf8(body).and_then(|text| parse_array(text, reader, &mut out)),
        Framing::Json => utf8(body).and_then(|text| match first_byte(text) {
            Some(b'[') => parse_array(text, reader, &mut out),
            Some(b'{') => parse_single(text, reader, &mut out),
            None => Err(BatchError::Empty {
                expected: "an event (a JSON object) or a batch (a JSON array)",
            }),
            Some(_) => Err(BatchError::WrongShape {
                expected: "an event (a JSON object) or a batch (a JSON array)",
                found: describe_start(text),
            }),
        }),
    };
    let batch = out.finish(spare);
    read.map(|()| batch)
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

fn parse_single(text: &str, reader: Reader, out: &mut Builder) -> Result<(), BatchError> {
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
    if reader == Reader::Fast && out.scan_whole(0, text) {
        return Ok(());
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = WireEvent::deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed))
        .map_err(|e| syntax_error(text, &e))?;
    out.accept(0, parsed, None);
    Ok(())
}

fn parse_array(text: &str, reader: Reader, out: &mut Builder) -> Result<(), BatchError> {
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
    if reader == Reader::Fast {
        if scan_array(text, out).is_some() {
            return Ok(());
        }
        out.clear();
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_seq(BatchVisitor { out })
        .and_then(|()| deserializer.end())
        .map_err(|e| syntax_error(text, &e))?;
    Ok(())
}

/// Files a batch of events all of the common shape; `None` when any part of the body
/// is not (the caller then clears `out` and the general reader reads it all, errors
/// included).
fn scan_array(text: &str, out: &mut Builder) -> Option<()> {
    let mut scanner = Scanner::new(text.as_bytes(), Whitespace::Json);
    scanner.skip_whitespace();
    scanner.eat(b'[')?;
    scanner.skip_whitespace();
    if scanner.eat(b']').is_none() {
        let mut index = 0;
        loop {
            let members = out.members.len();
            let (event, end) = scan_event(text, scanner.at, Whitespace::Json, &mut out.members)?;
            out.accept_scanned(index, event, members);
            index += 1;
            scanner.at = end;
            scanner.skip_whitespace();
            match scanner.next()? {
                b',' => scanner.skip_whitespace(),
                b']' => break,
                _ => return None,
            }
        }
    }
    scanner.skip_whitespace();
    scanner.at_end().then_some(())
}

fn parse_ndjson(body: &[u8], reader: Reader, out: &mut Builder) {
    let mut lines = NdjsonLines { index: 0 };
    match std::str::from_utf8(body) {
        Ok(text) if reader == Reader::Fast => lines.scan(text, out),
        // The common case: split the text (a vectorised search for newlines).
        Ok(text) => {
            for (line_number, text) in (1..).zip(text.split('\n')) {
                lines.read(out, line_number, Ok(text));
            }
        }
        // Otherwise only the lines holding invalid bytes are lost.
        Err(_) => {
            for (line_number, bytes) in (1..).zip(body.split(|&b| b == b'\n')) {
                lines.read(
                    out,
                    line_number,
                    std::str::from_utf8(bytes).map_err(|e| e.valid_up_to() + 1),
                );
            }
        }
    }
}

/// NDJSON read line by line; `index` counts the non-blank lines so far.
struct NdjsonLines {
    index: usize,
}

impl NdjsonLines {
    /// Each line through the scanner, which stops at the line's end (a newline is not
    /// whitespace to it), so lines need not be split first; a line it does not take
    /// is split off and read by [`NdjsonLines::read`].
    fn scan(&mut self, text: &str, out: &mut Builder) {
        let bytes = text.as_bytes();
        let mut at = 0;
        let mut line_number = 1;
        while at < bytes.len() {
            let members = out.members.len();
            if let Some((event, end)) =
                scan_event(text, at, Whitespace::WithinLine, &mut out.members)
            {
                let mut scanner = Scanner::new(bytes, Whitespace::WithinLine);
                scanner.at = end;
                scanner.skip_whitespace();
                if matches!(scanner.peek(), None | Some(b'\n')) {
                    out.accept_scanned(self.index, event, members);
                    self.index += 1;
                    at = scanner.at + 1;
                    line_number += 1;
                    continue;
                }
            }
            out.members.truncate(members);
            let rest = bytes.get(at..).unwrap_or_default();
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |n| at + n);
            self.read(out, line_number, Ok(text.get(at..end).unwrap_or_default()));
            at = end + 1;
            line_number += 1;
        }
    }

    /// One line through the general reader (a blank line is skipped).
    fn read(&mut self, out: &mut Builder, line_number: usize, line: Result<&str, usize>) {
        let blank = match line {
            Ok(text) => text.bytes().all(|b| b.is_ascii_whitespace()),
            Err(_) => false,
        };
        if blank {
            return;
        }
        let event_index = self.index;
        self.index += 1;
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
            Ok(parsed) => out.accept(event_index, parsed, None),
            Err(e) => out.rejected.push(whole_line(format!(
                "line {line_number} is not valid JSON: {} at column {}",
                bare_message(&e),
                e.column()
            ))),
        }
    }
}

/// A body's events and rejections as they are found: the valid events' texts go
/// end to end into one buffer, shared by the events once the body is read.
struct Builder {
    text: String,
    members: Vec<Member>,
    /// Where `text` and `members` go once complete.
    shared: Arc<OnceLock<BatchText>>,
    events: Vec<(usize, UsageEvent)>,
    rejected: Vec<EventRejection>,
}

impl Builder {
    /// An empty builder, with the spare buffers.
    fn new(body_length: usize, spare: &mut Spare) -> Builder {
        let mut out = Builder {
            text: std::mem::take(&mut spare.text.text),
            members: std::mem::take(&mut spare.text.members),
            shared: Arc::default(),
            events: std::mem::take(&mut spare.events),
            rejected: std::mem::take(&mut spare.rejected),
        };
        out.clear();
        // The valid events' texts take most of the body (telemetry events are a few
        // hundred bytes with a few members in `data`): reserved once, no regrowth.
        out.text.reserve(body_length);
        out.members.reserve(body_length / 64);
        out.events.reserve(body_length / 256);
        out
    }

    fn clear(&mut self) {
        self.text.clear();
        self.members.clear();
        self.events.clear();
        self.rejected.clear();
    }

    /// The batch, its events sharing the text; the builder's own buffers go back to
    /// `spare`.
    fn finish(self, spare: &mut Spare) -> ParsedBatch {
        let text = BatchText {
            text: self.text,
            members: self.members,
        };
        if self.events.is_empty() {
            spare.text = text;
        } else if let Err(text) = self.shared.set(text) {
            // Not set before (a builder finishes once); kept for the next body anyway.
            spare.text = text;
        }
        ParsedBatch {
            events: self.events,
            rejected: self.rejected,
        }
    }

    /// Reads `text` (one event, whitespace around it allowed) with the scanner;
    /// `false`, having filed nothing, when it is not of the common shape.
    fn scan_whole(&mut self, index: usize, text: &str) -> bool {
        let members = self.members.len();
        let scanned =
            scan_event(text, 0, Whitespace::Json, &mut self.members).filter(|&(_, end)| {
                let mut scanner = Scanner::new(text.as_bytes(), Whitespace::Json);
                scanner.at = end;
                scanner.skip_whitespace();
                scanner.at_end()
            });
        match scanned {
            Some((event, _)) => {
                self.accept_scanned(index, event, members);
                true
            }
            None => {
                self.members.truncate(members);
                false
            }
        }
    }

    /// Files a scanned event: kept directly when every rule holds in its common form,
    /// otherwise judged by [`Builder::accept`], which words the problems.
    fn accept_scanned(&mut self, index: usize, event: ScannedEvent<'_>, members: usize) {
        if let ScannedEvent {
            id: Some(id),
            source: Some(source),
            specversion: Some(SPEC_VERSION),
            event_type: Some(event_type),
            subject: Some(subject),
            time: Some(time),
            datacontenttype,
            data: Some(data),
        } = event
            && !id.is_empty()
            && !event_type.is_empty()
            && !subject.is_empty()
            && !source.is_empty()
            && source.bytes().all(|b| URI_CHARACTERS[usize::from(b)])
            && datacontenttype.is_none_or(|t| !t.is_empty() && is_json_media_type(t))
            && let Some(time) = utc_time(time.as_bytes())
        {
            self.keep(
                index,
                [
                    id,
                    source,
                    event_type,
                    subject,
                    datacontenttype.unwrap_or_default(),
                    data,
                ],
                time,
                Some(members),
            );
            return;
        }
        self.accept(index, WireEvent::Object(event.into_wire()), Some(members));
    }

    /// Files a valid event: its parts (`id`, `source`, `type`, `subject`,
    /// `datacontenttype` or empty, `data`) copied into the shared text.
    fn keep(&mut self, index: usize, parts: [&str; 6], time: Timestamp, members: Option<usize>) {
        let key = EventKey::of(parts[1], parts[0]);
        let start = self.text.len();
        let mut ends = [0; 6];
        for (end, part) in ends.iter_mut().zip(parts) {
            self.text.push_str(part);
            *end = self.text.len();
        }
        let members = members.map(|first| (first, self.members.len()));
        let layout = Layout {
            start,
            ends,
            members,
            time,
            key,
        };
        let shared = Arc::clone(&self.shared);
        self.events.push((index, UsageEvent { shared, layout }));
    }
}

/// The attributes of an event as the scanner found them (strings without escapes).
#[derive(Default)]
struct ScannedEvent<'a> {
    id: Option<&'a str>,
    source: Option<&'a str>,
    specversion: Option<&'a str>,
    event_type: Option<&'a str>,
    subject: Option<&'a str>,
    time: Option<&'a str>,
    datacontenttype: Option<&'a str>,
    data: Option<&'a str>,
}

impl<'a> ScannedEvent<'a> {
    /// As the general reader gives them.
    fn into_wire(self) -> WireAttributes<'a> {
        let text = |value: Option<&'a str>| value.map(|v| Attr::Text(Cow::Borrowed(v)));
        WireAttributes {
            id: text(self.id),
            source: text(self.source),
            specversion: text(self.specversion),
            event_type: text(self.event_type),
            subject: text(self.subject),
            time: text(self.time),
            datacontenttype: text(self.datacontenttype),
            data: self.data,
            data_base64: false,
            repeated: Vec::new(),
        }
    }
}

/// How deep `data` may nest for the scanner; deeper values go to the general reader
/// (whose own limit then applies).
const MAX_SCAN_DEPTH: u32 = 32;

/// Reads an event of the common shape directly, without the general JSON reader: an
/// object whose keys and string values hold no escapes, whose attributes Purser reads
/// are strings (and `data` an object), none repeated, and no `data_base64`. Starting
/// at `at` (whitespace allowed), it gives the attributes as the general reader would
/// and where the object ends, and adds the top-level members of `data` to `members`.
/// Anything else, valid or not, gives `None` (the caller then drops what was added to
/// `members`): the general reader decides, so results and messages stay its own.
fn scan_event<'a>(
    text: &'a str,
    at: usize,
    whitespace: Whitespace,
    members: &mut Vec<Member>,
) -> Option<(ScannedEvent<'a>, usize)> {
    let mut scanner = Scanner::new(text.as_bytes(), whitespace);
    scanner.at = at;
    scanner.skip_whitespace();
    scanner.eat(b'{')?;
    let mut event = ScannedEvent::default();
    for n in 0.. {
        scanner.skip_whitespace();
        // Producers write the attributes in one order: each member's opening is
        // compared whole at its usual place, the key read only when it differs.
        let field = match USUAL_ORDER.get(n) {
            Some(&(opening, field))
                if scanner
                    .rest()
                    .get(..opening.len())
                    .is_some_and(|start| same_text(start, opening)) =>
            {
                scanner.at += opening.len();
                field
            }
            _ => {
                scanner.eat(b'"')?;
                let name = scanner.plain_string()?;
                scanner.skip_whitespace();
                scanner.eat(b':')?;
                Field::of(text.get(name.0..name.1)?)
            }
        };
        scanner.skip_whitespace();
        let slot = match field {
            Field::Id => &mut event.id,
            Field::Source => &mut event.source,
            Field::SpecVersion => &mut event.specversion,
            Field::Type => &mut event.event_type,
            Field::Subject => &mut event.subject,
            Field::Time => &mut event.time,
            Field::DataContentType => &mut event.datacontenttype,
            Field::Data => {
                if event.data.is_some() {
                    return None;
                }
                let start = scanner.at;
                scanner.eat(b'{')?;
                scanner.data_members(start, members)?;
                event.data = Some(text.get(start..scanner.at)?);
                scanner.end_of_member()?;
                if scanner.last_member {
                    break;
                }
                continue;
            }
            Field::DataBase64 => return None,
            Field::Other => {
                scanner.value(0)?;
                scanner.end_of_member()?;
                if scanner.last_member {
                    break;
                }
                continue;
            }
        };
        if slot.is_some() {
            return None;
        }
        scanner.eat(b'"')?;
        let value = scanner.plain_string()?;
        *slot = Some(text.get(value.0..value.1)?);
        scanner.end_of_member()?;
        if scanner.last_member {
            break;
        }
    }
    Some((event, scanner.at))
}

/// The attributes in the order producers write them, each with its opening.
const USUAL_ORDER: [(&[u8], Field); 8] = [
    (b"\"specversion\":", Field::SpecVersion),
    (b"\"id\":", Field::Id),
    (b"\"source\":", Field::Source),
    (b"\"type\":", Field::Type),
    (b"\"subject\":", Field::Subject),
    (b"\"time\":", Field::Time),
    (b"\"datacontenttype\":", Field::DataContentType),
    (b"\"data\":", Field::Data),
];

/// The high bit of each byte of `word` that is `"`, `\\` or a control character
/// (below 0x20), exact for the lowest such byte (higher ones may be flagged falsely
/// once one is found). Bytes from 0x80 (UTF-8 sequences) are never flagged.
fn stop_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control
}

/// A cursor over JSON text accepting only a strict subset of JSON: `None` whenever
/// the text leaves it.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    whitespace: Whitespace,
    /// Whether the member just read closed its object.
    last_member: bool,
}

/// What the scanner skips as whitespace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Whitespace {
    /// JSON's: space, tab, carriage return, newline.
    Json,
    /// Within an NDJSON line: JSON's but newline, which ends the line.
    WithinLine,
}

impl<'a> Scanner<'a> {
    fn new(bytes: &'a [u8], whitespace: Whitespace) -> Scanner<'a> {
        Scanner {
            bytes,
            at: 0,
            whitespace,
            last_member: false,
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// Whitespace, as serde_json skips it (newlines only in [`Whitespace::Json`]).
    fn skip_whitespace(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => {}
                Some(b'\n') if self.whitespace == Whitespace::Json => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    /// After an opening quote: the content of a string without escapes or control
    /// characters (the range of its text), the closing quote consumed.
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let mut at = start;
        // Eight bytes at a time: a word holding no quote, backslash or control byte
        // is skipped whole (the lowest flagged byte of a word is found exactly).
        while let Some(word) = self.bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).ok()?);
            let flagged = stop_bytes(word);
            if flagged != 0 {
                at += (flagged.trailing_zeros() / 8) as usize;
                return self.close_string(start, at);
            }
            at += 8;
        }
        let rest = self.bytes.get(at..)?;
        at += rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        self.close_string(start, at)
    }

    /// The string from `start` ends at `at` if that byte is its closing quote.
    fn close_string(&mut self, start: usize, at: usize) -> Option<(usize, usize)> {
        (self.bytes.get(at) == Some(&b'"')).then(|| {
            self.at = at + 1;
            (start, at)
        })
    }

    /// After a member's value: `,` or the object's `}`.
    fn end_of_member(&mut self) -> Option<()> {
        self.skip_whitespace();
        self.last_member = match self.next()? {
            b',' => false,
            b'}' => true,
            _ => return None,
        };
        Some(())
    }

    /// Any JSON value of the subset, skipped.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.plain_string().map(drop)
            }
            b'{' => {
                self.at += 1;
                self.object(depth + 1)
            }
            b'[' => {
                self.at += 1;
                self.array(depth + 1)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// JSON's number grammar: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// After `{`: the members, to the closing `}`.
    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_whitespace();
            self.eat(b'"')?;
            self.plain_string()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            self.value(depth)?;
            self.end_of_member()?;
            if self.last_member {
                return Some(());
            }
        }
    }

    /// After `[`: the elements, to the closing `]`.
    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_whitespace();
            self.value(depth)?;
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// After the `{` of `data` (at `start`): its members, to the closing `}`, each
    /// recorded in `members` (offsets from `start`).
    fn data_members(&mut self, start: usize, members: &mut Vec<Member>) -> Option<()> {
        let offset = |at: usize| u32::try_from(at - start).ok();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_whitespace();
            self.eat(b'"')?;
            let key = self.plain_string()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            let value_start = self.at;
            self.value(1)?;
            members.push(Member {
                key: (offset(key.0)?, offset(key.1)?),
                value: (offset(value_start)?, offset(self.at)?),
            });
            self.end_of_member()?;
            if self.last_member {
                return Some(());
            }
        }
    }
}

struct BatchVisitor<'o> {
    out: &'o mut Builder,
}

impl<'de> Visitor<'de> for BatchVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(parsed) = seq.next_element::<WireEvent<'de>>()? {
            self.out.accept(index, parsed, None);
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
    /// The attribute of this name.
    fn of(name: &str) -> Field {
        match name {
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
        }
    }

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
                Ok(Field::of(v))
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
    /// Its JSON text.
    data: Option<&'a str>,
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
                    if event.data.replace(data.get()).is_some() {
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

impl Builder {
    /// Validates one element and files it as an event or as rejections. `members`:
    /// where the scanner put the members of its `data` (up to the end of the table),
    /// dropped if the event is refused.
    fn accept(&mut self, index: usize, parsed: WireEvent<'_>, members: Option<usize>) {
        if !self.validate(index, parsed, members)
            && let Some(first) = members
        {
            self.members.truncate(first);
        }
    }

    /// Whether the element was kept as an event.
    fn validate(&mut self, index: usize, parsed: WireEvent<'_>, members: Option<usize>) -> bool {
        let mut check = Check {
            index,
            rejected: &mut self.rejected,
            failed: false,
        };
        let wire = match parsed {
            WireEvent::Object(wire) => wire,
            WireEvent::NotAnObject(kind) => {
                check.reject(None, format!("an event is a JSON object, not {kind}"));
                return false;
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
            Some(raw) if raw.starts_with('{') => Some(raw),
            None => {
                check.reject(Some("data"), "is required: a JSON object holding the usage");
                None
            }
            Some(raw) => {
                check.reject(
                    Some("data"),
                    format!("must be a JSON object, not {}", json_kind(raw)),
                );
                None
            }
        };
        if check.failed {
            return false;
        }
        let (Some(id), Some(source), Some(event_type), Some(subject), Some(time), Some(data)) =
            (id, source, event_type, subject, time, data)
        else {
            return false;
        };
        let datacontenttype = datacontenttype.unwrap_or_default();
        self.keep(
            index,
            [&id, &source, &event_type, &subject, &datacontenttype, data],
            time,
            members,
        );
        true
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
    if value == "application/json" {
        return true;
    }
    let media_type = value.split(';').next().unwrap_or("").trim();
    let bytes = media_type.as_bytes();
    media_type.eq_ignore_ascii_case("application/json")
        || (media_type.contains('/')
            && bytes.len() > 5
            && bytes[bytes.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// The bytes a URI-reference holds as they are (RFC 3986's unreserved and reserved
/// characters), `%` not included.
const URI_CHARACTERS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~:/?#[]@!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// RFC 3986's character rules for a URI-reference: only its characters, and `%` only
/// as the start of a percent-encoded octet. The structure (scheme, authority, path) is
/// not checked: any string of these characters is a relative reference at worst.
fn check_uri_reference(value: &str) -> Result<(), String> {
    // The common case, a byte at a time through a table; `%` and anything refused go
    // to the full check below, which words the problem.
    if value.bytes().all(|b| URI_CHARACTERS[usize::from(b)]) {
        return Ok(());
    }
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
    if let Some(time) = utc_time(value.as_bytes()) {
        return Ok(time);
    }
    parse_rfc3339_general(value)
}

/// The common case of [`parse_rfc3339`] read directly: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`
/// (`t`, `z` too) from 1970 to 9998, leap seconds excepted. `None` for anything else,
/// which jiff then reads (and whose errors it words); when this gives a time, it is
/// the one jiff gives.
fn utc_time(b: &[u8]) -> Option<Timestamp> {
    // The fixed part, `YYYY-MM-DDTHH:MM:SS`, checked at once: each digit position
    // wraps below '0' or lands above 9 when it is not a digit.
    let fixed: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    let d = fixed.map(|c| c.wrapping_sub(b'0'));
    let all_digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        .iter()
        .fold(0u8, |bad, &i| bad | u8::from(d[i] > 9));
    let separators = fixed[4] == b'-'
        && fixed[7] == b'-'
        && matches!(fixed[10], b'T' | b't')
        && fixed[13] == b':'
        && fixed[16] == b':';
    if all_digits != 0 || !separators {
        return None;
    }
    let two = |i: usize| i64::from(d[i]) * 10 + i64::from(d[i + 1]);
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    let digit = |i: usize| {
        b.get(i)
            .and_then(|d| d.checked_sub(b'0'))
            .filter(|d| *d < 10)
            .map(i64::from)
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    let in_range = (1970..=9998).contains(&year)
        && (1..=days_in_month).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !in_range {
        return None;
    }
    // Digits past the microsecond are dropped (truncation, as the general path does).
    let mut micros = 0;
    let mut end = 19;
    if b.get(19) == Some(&b'.') {
        end = 20;
        while let Some(d) = digit(end) {
            if end < 26 {
                micros = micros * 10 + d;
            }
            end += 1;
        }
        if end == 20 {
            return None;
        }
        for _ in end.min(26)..26 {
            micros *= 10;
        }
    }
    if !matches!(b.get(end), Some(b'Z' | b'z')) || end + 1 != b.len() {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm; years here are positive).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Timestamp::from_microsecond(seconds * 1_000_000 + micros).ok()
}

/// [`parse_rfc3339`] through jiff, for every form.
fn parse_rfc3339_general(value: &str) -> Result<Timestamp, String> {
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
mod differential_tests;

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
