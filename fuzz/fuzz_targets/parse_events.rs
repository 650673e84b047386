//! Fuzzes the usage-event parser (`purser_core::events::parse_batch`).
//!
//! Whatever the bytes, for every framing:
//! - parsing never panics and is deterministic (same result, errors included);
//! - a body that is not UTF-8 is refused as such (except NDJSON, line by line);
//! - every event of the body is accounted for exactly once: kept, or refused with one
//!   or more rejections, the indices being exactly 0..n where n is counted
//!   independently (array elements, non-blank lines); kept indices increase and
//!   rejections come in index order;
//! - each event of a batch or NDJSON body is judged as it would be alone (the same
//!   event or rejections as that element parsed as a single event);
//! - `json` framing is `single` or `batch` by the first byte;
//! - a kept event holds the rules (non-empty attributes, `data` an object, time to the
//!   microsecond, key of source and id), and written back as CloudEvents JSON it parses
//!   to the same event, alone, in a batch and as an NDJSON line;
//! - the scanner of the common event shape changes nothing: the result (events,
//!   rejections, whole-body errors) is the general reader's alone
//!   (`parse_batch_general`), and a `BatchReader` reusing a batch's buffers gives it
//!   too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser_core::events::{
    BatchError, BatchReader, EventKey, Framing, ParsedBatch, UsageEvent, parse_batch,
    parse_batch_general,
};
use serde_json::value::RawValue;

const FRAMINGS: [Framing; 4] = [
    Framing::Single,
    Framing::Batch,
    Framing::Ndjson,
    Framing::Json,
];

fuzz_target!(|body: &[u8]| {
    for framing in FRAMINGS {
        let result = parse_batch(body, framing);
        assert_eq!(
            parse_batch(body, framing),
            result,
            "parsing is deterministic"
        );
        assert_eq!(
            result,
            parse_batch_general(body, framing),
            "the scanner reads as the general reader ({framing:?})"
        );
        let mut reader = BatchReader::default();
        if let Ok(first) = reader.parse(body, framing) {
            reader.recycle(first);
        }
        assert_eq!(
            reader.parse(body, framing),
            result,
            "a reused BatchReader reads the same"
        );
        check_utf8(body, framing, &result);
        let Ok(parsed) = result else {
            continue;
        };
        // Each element of the body, found independently of the parser.
        let elements = elements(body, framing);
        check_accounting(&parsed, elements.len(), framing);
        for (index, element) in elements.iter().enumerate() {
            if let Some(text) = element {
                check_alone(&parsed, index, text);
            }
        }
        for (_, event) in &parsed.events {
            check_event(event);
            check_round_trip(event);
        }
    }
    // `json` is `single` or `batch`, told apart by the first byte.
    let json = parse_batch(body, Framing::Json);
    if let Ok(text) = std::str::from_utf8(body) {
        match text.bytes().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => assert_eq!(json, parse_batch(body, Framing::Single)),
            Some(b'[') => assert_eq!(json, parse_batch(body, Framing::Batch)),
            _ => assert!(json.is_err(), "json framing accepted {text:?}"),
        }
    }
});

/// A body that is not UTF-8 is refused whole, with the offset of the first bad byte
/// (NDJSON refuses only the lines holding bad bytes).
fn check_utf8(body: &[u8], framing: Framing, result: &Result<ParsedBatch, BatchError>) {
    let Err(e) = std::str::from_utf8(body) else {
        assert!(
            !matches!(result, Err(BatchError::NotUtf8 { .. })),
            "UTF-8 text refused as not UTF-8"
        );
        return;
    };
    if framing == Framing::Ndjson {
        assert!(result.is_ok(), "NDJSON refuses lines, not bodies");
        return;
    }
    let offset = e.valid_up_to();
    let line = 1 + body[..offset].iter().filter(|&&b| b == b'\n').count();
    assert_eq!(result, &Err(BatchError::NotUtf8 { offset, line }));
}

/// The body's elements in order: `Some(text)` for a UTF-8 element, `None` for an
/// NDJSON line that is not UTF-8. Only called when the framing read the body.
fn elements(body: &[u8], framing: Framing) -> Vec<Option<String>> {
    let text = || std::str::from_utf8(body).expect("a body read whole is UTF-8");
    let array = || {
        let items: Vec<&RawValue> =
            serde_json::from_str(text()).expect("a body read as a batch is a JSON array");
        items
            .into_iter()
            .map(|raw| Some(raw.get().to_owned()))
            .collect()
    };
    match framing {
        Framing::Single => vec![Some(text().to_owned())],
        Framing::Batch => array(),
        Framing::Json => match text().bytes().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => array(),
            _ => vec![Some(text().to_owned())],
        },
        Framing::Ndjson => body
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| std::str::from_utf8(line).ok().map(str::to_owned))
            .collect(),
    }
}

/// Every one of the `n` events is kept or refused, never both, never neither.
fn check_accounting(parsed: &ParsedBatch, n: usize, framing: Framing) {
    let kept: Vec<usize> = parsed.events.iter().map(|(i, _)| *i).collect();
    assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "{framing:?}: kept indices increase: {kept:?}"
    );
    assert!(
        parsed.rejected.windows(2).all(|w| w[0].index <= w[1].index),
        "{framing:?}: rejections are in index order: {:?}",
        parsed.rejected
    );
    let mut refused: Vec<usize> = parsed.rejected.iter().map(|r| r.index).collect();
    refused.dedup();
    assert_eq!(parsed.n_rejected_events(), refused.len());
    for r in &parsed.rejected {
        assert!(
            r.index < n,
            "{framing:?}: rejection index {} of a body of {n} events",
            r.index
        );
        assert!(
            kept.binary_search(&r.index).is_err(),
            "{framing:?}: event {} both kept and refused",
            r.index
        );
        assert!(!r.reason.is_empty(), "a rejection says why");
    }
    let mut all: Vec<usize> = kept.iter().chain(&refused).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "{framing:?}: every event of the body kept or refused once"
    );
}

/// Element `index` of a body is judged as that element alone would be.
fn check_alone(parsed: &ParsedBatch, index: usize, element: &str) {
    let here_events: Vec<&UsageEvent> = parsed
        .events
        .iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, e)| e)
        .collect();
    let here_rejected: Vec<(Option<&str>, &str)> = parsed
        .rejected
        .iter()
        .filter(|r| r.index == index)
        .map(|r| (r.field.as_deref(), r.reason.as_str()))
        .collect();
    match parse_batch(element.as_bytes(), Framing::Single) {
        Ok(alone) => {
            let alone_events: Vec<&UsageEvent> = alone.events.iter().map(|(_, e)| e).collect();
            let alone_rejected: Vec<(Option<&str>, &str)> = alone
                .rejected
                .iter()
                .map(|r| (r.field.as_deref(), r.reason.as_str()))
                .collect();
            assert_eq!(here_events, alone_events, "event {index} judged as alone");
            assert_eq!(
                here_rejected, alone_rejected,
                "event {index} judged as alone"
            );
        }
        // Not an object, or (an NDJSON line) not JSON: refused as a whole.
        Err(_) => {
            assert!(here_events.is_empty(), "event {index}: {element:?} kept");
            assert!(
                here_rejected.len() == 1 && here_rejected[0].0.is_none(),
                "event {index}: {element:?} refused as {here_rejected:?}"
            );
        }
    }
}

/// A kept event holds the rules `UsageEvent` promises.
fn check_event(event: &UsageEvent) {
    for (name, value) in [
        ("id", event.id()),
        ("source", event.source()),
        ("type", event.event_type()),
        ("subject", event.subject()),
    ] {
        assert!(!value.is_empty(), "kept an event with an empty {name}");
    }
    assert!(event.data().starts_with('{') && event.data().ends_with('}'));
    assert!(
        serde_json::from_str::<&RawValue>(event.data()).is_ok(),
        "data is JSON: {}",
        event.data()
    );
    if let Some(media_type) = event.datacontenttype() {
        let bare = media_type.split(';').next().unwrap_or("").trim();
        let lower = bare.to_ascii_lowercase();
        assert!(
            lower == "application/json"
                || (lower.contains('/') && lower.ends_with("+json") && lower.len() > 5),
            "kept datacontenttype {media_type:?}"
        );
    }
    assert_eq!(
        event.time().subsec_nanosecond() % 1_000,
        0,
        "time kept to the microsecond"
    );
    assert_eq!(event.key(), EventKey::of(event.source(), event.id()));
}

/// Written back as CloudEvents JSON, a kept event reads back the same in every
/// framing that can hold it.
fn check_round_trip(event: &UsageEvent) {
    let json = serde_json::to_string(event).expect("a kept event serialises");
    let mut bodies = vec![
        (Framing::Single, json.clone()),
        (Framing::Json, json.clone()),
        (Framing::Batch, format!("[{json}]")),
        (Framing::Json, format!(" [\n{json}\n]")),
    ];
    // `data` keeps the producer's whitespace, raw newlines included; such an event
    // does not fit on one NDJSON line.
    if !json.contains('\n') {
        bodies.push((Framing::Ndjson, format!("\n{json}\r\n\n")));
    }
    for (framing, body) in bodies {
        let back = parse_batch(body.as_bytes(), framing)
            .unwrap_or_else(|e| panic!("{framing:?}: its JSON does not parse: {e}: {body}"));
        assert!(
            back.rejected.is_empty(),
            "{framing:?}: its JSON is refused: {:?}: {body}",
            back.rejected
        );
        assert_eq!(back.events.len(), 1, "{framing:?}: {body}");
        let (index, back) = &back.events[0];
        assert_eq!(*index, 0);
        assert_eq!(back.key(), event.key(), "{body}");
        assert_eq!(back.time(), event.time(), "{body}");
        assert_eq!(back.subject(), event.subject(), "{body}");
        assert_eq!(back.event_type(), event.event_type(), "{body}");
        assert_eq!(back.data(), event.data(), "{body}");
        assert_eq!(back.datacontenttype(), event.datacontenttype(), "{body}");
        assert_eq!(back, event, "{body}");
    }
}
