//! The scanner of the common event shape against the general reader: for every body
//! (a table of shapes, then many mutations of them), every framing must give the same
//! result, events and rejections and whole-body errors alike; the meters must read
//! the same values and groups from events of either; and the direct time reader must
//! agree with jiff wherever it gives a time.

use super::*;
use crate::meter::{Meter, MeterDraft};

const GOOD: &str = r#"{"specversion":"1.0","id":"c-00220-1","source":"polaris://westeurope/clusters/c-00220","type":"storage.capacity.sampled","subject":"acct-00220","time":"2026-11-16T00:00:00Z","datacontenttype":"application/json","data":{"cluster_id":"c-00220","bytes_stored":180191573055196,"tier":"hot"}}"#;

/// The attributes of [`GOOD`] in its order, as (name, JSON value).
const ATTRIBUTES: [(&str, &str); 8] = [
    ("specversion", r#""1.0""#),
    ("id", r#""c-00220-1""#),
    ("source", r#""polaris://westeurope/clusters/c-00220""#),
    ("type", r#""storage.capacity.sampled""#),
    ("subject", r#""acct-00220""#),
    ("time", r#""2026-11-16T00:00:00Z""#),
    ("datacontenttype", r#""application/json""#),
    (
        "data",
        r#"{"cluster_id":"c-00220","bytes_stored":180191573055196,"tier":"hot"}"#,
    ),
];

/// An event of the attributes as given, in that order.
fn object(members: &[(&str, &str)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// [`GOOD`] with one attribute's value replaced (`None`: removed).
fn with(name: &str, value: Option<&str>) -> String {
    let members: Vec<(&str, &str)> = ATTRIBUTES
        .iter()
        .filter_map(|&(n, v)| match (n == name, value) {
            (false, _) => Some((n, v)),
            (true, Some(value)) => Some((n, value)),
            (true, None) => None,
        })
        .collect();
    object(&members)
}

/// Values tried in every attribute: strings of many forms, and every other kind.
const VALUES: &[&str] = &[
    r#""""#,
    r#""x""#,
    r#""1.0""#,
    r#""0.3""#,
    r#""c-1\u0031""#,
    r#""with \"quotes\"""#,
    r#""back\\slash""#,
    r#""tab\there""#,
    "\"raw\ttab\"",
    r#""naïve €""#,
    r#""polaris://a/b?x=%20#f""#,
    r#""bad%2""#,
    r#""has space""#,
    r#""application/json""#,
    r#""application/cloudevents+json; charset=utf-8""#,
    r#""text/xml""#,
    r#""2026-11-16T10:05:03Z""#,
    "null",
    "true",
    "false",
    "0",
    "-1.5e3",
    "[]",
    "[1,\"a\",{}]",
    "{}",
    r#"{"a":1}"#,
    r#""\ud83d\ude00""#,
];

/// Times tried: the common form and its neighbours, valid or not.
fn times() -> Vec<String> {
    let mut times: Vec<String> = [
        "2026-11-16T10:05:03Z",
        "2026-11-16t10:05:03z",
        "2026-11-16T10:05:03.5Z",
        "2026-11-16T10:05:03.123456Z",
        "2026-11-16T10:05:03.1234567Z",
        "2026-11-16T10:05:03.123456789123456Z",
        "2026-11-16T10:05:03.Z",
        "2026-11-16T10:05:03+01:00",
        "2026-11-16T10:05:03.25-05:30",
        "2026-11-16T10:05:03-00:00",
        "2026-11-16T10:05:03+00:00",
        "2026-11-16T10:05:03+0100",
        "2026-11-16T23:59:60Z",
        "2016-12-31T23:59:60Z",
        "2026-11-16T24:00:00Z",
        "2026-11-16T10:60:00Z",
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2000-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9998-12-31T23:59:59.999999999Z",
        "2026-11-16 10:05:03Z",
        "2026-11-16T10:05:03",
        "2026-11-16T10:05Z",
        "20261116T100503Z",
        "2026-11-16T10:05:03Z[Europe/Paris]",
        "2026-11-16T10:05:03ZZ",
        "+2026-11-16T10:05:03Z",
        "2026-11-16T10:05:03.1.2Z",
        "2026-11-16T1a:05:03Z",
        "",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut seed = 7u64;
    for _ in 0..400 {
        let mut pick = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let year = [1969, 1970, 2000, 2024, 2026, 2100, 9998, 9999][pick(8) as usize];
        let fraction = match pick(4) {
            0 => String::new(),
            _ => format!(
                ".{}",
                "987654321012345".get(..1 + pick(15) as usize).unwrap_or("")
            ),
        };
        let zone = ["Z", "z", "+02:00", "-00:00"][pick(4) as usize];
        times.push(format!(
            "{year:04}-{:02}-{:02}{}{:02}:{:02}:{:02}{fraction}{zone}",
            pick(14),
            pick(33),
            ["T", "t"][pick(2) as usize],
            pick(26),
            pick(62),
            pick(62),
        ));
    }
    times
}

/// `data` values tried: objects of many shapes, and every other kind.
const DATA: &[&str] = &[
    "{}",
    "{ }",
    r#"{"bytes_stored":1}"#,
    r#"{"bytes_stored":1,"bytes_stored":2}"#,
    r#"{"cluster_id":"c\u0031","bytes_stored":"12"}"#,
    r#"{"cluster_id":7,"bytes_stored":-0.5e-3}"#,
    r#"{"cluster_id":null,"bytes_stored":true}"#,
    r#"{"cluster_id":["a"],"bytes_stored":{"x":1}}"#,
    r#"{"usage":{"bytes_stored":5,"cluster_id":"deep"},"bytes_stored":1.50}"#,
    r#" { "bytes_stored" : 12 , "cluster_id" : "spaced" } "#,
    r#"{"bytes_stored":01}"#,
    r#"{"bytes_stored":1.}"#,
    r#"{"bytes_stored":-}"#,
    r#"{"bytes_stored":1e}"#,
    r#"{"bytes_stored":1E+400}"#,
    r#"{"bytes_stored":123456789012345678901234567890}"#,
    r#"{"bytes_stored":1,}"#,
    r#"{"bytes_stored" 1}"#,
    r#"{"a":[1,2,[3,[4,{"b":[]}]]],"bytes_stored":2}"#,
    r#"{"a":tru}"#,
    r#"{"é":"ü","bytes_stored":3}"#,
    r#"{"k\"ey":1}"#,
    "[1,2]",
    r#""text""#,
    "42",
    "null",
];

/// Extension attributes and other members tried.
const EXTENSIONS: &[&str] = &[
    r#""traceparent":"00-abc""#,
    r#""partitionkey":7"#,
    r#""region":{"nested":[1,2,{"x":null}]}"#,
    r#""flag":false"#,
    r#""ext":"a\nb""#,
    r#""data_base64":"AAAA""#,
    r#""id":"again""#,
    r#""data":{"again":1}"#,
    r#""ID":"upper""#,
    r#""s\u0075bject":"escaped-key""#,
];

/// The table of bodies: one event each.
fn events() -> Vec<String> {
    let mut events = vec![GOOD.to_owned()];
    for (name, _) in ATTRIBUTES {
        events.push(with(name, None));
        for value in VALUES {
            events.push(with(name, Some(value)));
        }
    }
    for time in times() {
        events.push(with("time", Some(&format!("\"{time}\""))));
    }
    for data in DATA {
        events.push(with("data", Some(data)));
    }
    for extension in EXTENSIONS {
        events.push(GOOD.replacen('{', &format!("{{{extension},"), 1));
        events.push(format!("{},{extension}}}", &GOOD[..GOOD.len() - 1]));
    }
    // Orders of the attributes.
    let mut reversed = ATTRIBUTES;
    reversed.reverse();
    events.push(object(&reversed));
    let mut rotated = ATTRIBUTES;
    rotated.rotate_left(3);
    events.push(object(&rotated));
    // Whitespace everywhere JSON allows it, and where it does not.
    for space in [" ", "\t", "\r", "\n", " \r\n\t", "\u{c}", "\u{a0}"] {
        events.push(
            GOOD.replace(':', &format!("{space}:{space}"))
                .replace(',', &format!("{space},{space}")),
        );
        events.push(format!("{space}{GOOD}{space}"));
    }
    events.extend(
        [
            "{}",
            "{ }",
            "[]",
            "7",
            "null",
            r#""event""#,
            "",
            "   ",
            "\u{feff}{}",
            "{\"id\"}",
            "{\"id\":}",
            "{\"id\":\"x\"",
        ]
        .map(str::to_owned),
    );
    events.push(format!("{GOOD} {GOOD}"));
    events.push(format!("{GOOD}x"));
    events.push(GOOD[..GOOD.len() - 1].to_owned());
    events.push(format!("{}{}", "{\"data\":".repeat(40), "}".repeat(40)));
    events.push(with(
        "data",
        Some(&format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40))),
    ));
    events.push(with(
        "data",
        Some(&format!(
            "{{\"bytes_stored\":{}1{}}}",
            "[".repeat(200),
            "]".repeat(200)
        )),
    ));
    events
}

/// Bytes that matter to JSON, for mutations.
const SIGNIFICANT: &[u8] = b"{}[]:,\"\\ \t\r\n0123456789-+.eEtrufalsn\x01\x7f";

/// A deterministic mutation of `text` (a byte removed, inserted, replaced or a part
/// repeated), possibly no longer UTF-8.
fn mutate(text: &[u8], seed: &mut u64) -> Vec<u8> {
    let mut next = |n: usize| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n.max(1) as u64) as usize
    };
    let mut bytes = text.to_vec();
    for _ in 0..1 + next(3) {
        let at = next(bytes.len() + 1);
        match next(6) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, SIGNIFICANT[next(SIGNIFICANT.len())]),
            2 if at < bytes.len() => bytes[at] = SIGNIFICANT[next(SIGNIFICANT.len())],
            3 => {
                let end = (at + next(12)).min(bytes.len());
                let part = bytes[at..end].to_vec();
                bytes.splice(at..at, part);
            }
            4 if at < bytes.len() => bytes[at] = 0xc3,
            _ => {
                let end = (at + next(4)).min(bytes.len());
                bytes.splice(at..end, "é".bytes());
            }
        }
    }
    bytes
}

const FRAMINGS: [Framing; 4] = [
    Framing::Single,
    Framing::Batch,
    Framing::Ndjson,
    Framing::Json,
];

/// Meters reading values and groups the way the benchmark's do, and along paths the
/// index does not hold.
fn meters() -> Vec<Meter> {
    [
        ("$.bytes_stored", Some("$.cluster_id"), "sum"),
        ("$.bytes_stored", Some("$.tier"), "time_weighted_avg"),
        ("$.usage.bytes_stored", Some("$.usage.cluster_id"), "max"),
        ("$.missing", None, "latest"),
        ("$", None, "count"),
    ]
    .iter()
    .map(|(path, group, aggregation)| {
        MeterDraft {
            name: "m".into(),
            event_type: "storage.capacity.sampled".into(),
            value_path: Some((*path).into()),
            aggregation: (*aggregation).into(),
            unit: "bytes".into(),
            group_by: group.map(str::to_owned),
            ..MeterDraft::default()
        }
        .validate()
        .expect("meter")
    })
    .collect()
}

/// The same result through the scanner and through the general reader, and the same
/// measurements of its events.
fn check(body: &[u8], meters: &[Meter]) -> usize {
    let mut kept = 0;
    for framing in FRAMINGS {
        let fast = parse_batch(body, framing);
        let general = parse_batch_general(body, framing);
        assert_eq!(
            fast,
            general,
            "{framing:?} body {:?}",
            String::from_utf8_lossy(body)
        );
        let mut reader = BatchReader::default();
        let reused = reader.parse(body, framing);
        assert_eq!(reused, general, "a fresh BatchReader, {framing:?}");
        if let Ok(batch) = reused {
            reader.recycle(batch);
            assert_eq!(
                reader.parse(body, framing),
                general,
                "a recycled BatchReader"
            );
        }
        let (Ok(fast), Ok(general)) = (fast, general) else {
            continue;
        };
        for ((_, a), (_, b)) in fast.events.iter().zip(&general.events) {
            kept += 1;
            assert_eq!(a.key(), b.key());
            assert_eq!(a.key(), EventKey::of(a.source(), a.id()));
            for meter in meters {
                assert_eq!(meter.value(a), meter.value(b), "{meter:?} on {a:?}");
                assert_eq!(meter.group(a), meter.group(b), "{meter:?} on {a:?}");
                assert_eq!(meter.measure(a), meter.measure(b), "{meter:?} on {a:?}");
            }
        }
    }
    kept
}

#[test]
fn the_scanner_reads_every_table_event_as_the_general_reader() {
    let meters = meters();
    let events = events();
    let mut kept = 0;
    for event in &events {
        kept += check(event.as_bytes(), &meters);
    }
    assert!(kept > 100, "the table keeps events too ({kept})");
    // Several events per body: batches and NDJSON, blank and broken lines among them.
    for window in events.chunks(7) {
        let batch = format!("[{}]", window.join(","));
        check(batch.as_bytes(), &meters);
        let spaced = format!(" [ {} ] ", window.join(" ,\n "));
        check(spaced.as_bytes(), &meters);
        let lines = window.join("\n");
        check(lines.as_bytes(), &meters);
        let crlf = format!("\n{}\r\n\n", window.join("\r\n  \n"));
        check(crlf.as_bytes(), &meters);
    }
    let good_batch = format!("[{}]", [GOOD; 5].join(","));
    assert_eq!(check(good_batch.as_bytes(), &meters), 10);
}

#[test]
fn the_scanner_reads_mutated_events_as_the_general_reader() {
    let meters = meters();
    let events = events();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..6 {
        for event in &events {
            let mutated = mutate(event.as_bytes(), &mut seed);
            check(&mutated, &meters);
            if round % 2 == 0 {
                // A mutation in the middle of a stream of good events.
                let mut lines = format!("{GOOD}\n").into_bytes();
                lines.extend_from_slice(&mutated);
                lines.extend_from_slice(format!("\n{GOOD}").as_bytes());
                check(&lines, &meters);
                let mut batch = format!("[{GOOD},").into_bytes();
                batch.extend_from_slice(&mutated);
                batch.extend_from_slice(format!(",{GOOD}]").as_bytes());
                check(&batch, &meters);
            }
        }
    }
}

#[test]
fn the_direct_time_reader_agrees_with_jiff() {
    let mut read = 0;
    for time in times() {
        if let Some(direct) = utc_time(time.as_bytes()) {
            read += 1;
            assert_eq!(Ok(direct), parse_rfc3339_general(&time), "{time}");
        }
        assert_eq!(parse_rfc3339(&time), parse_rfc3339_general(&time), "{time}");
    }
    assert!(
        read > 50,
        "the direct reader takes the common form ({read})"
    );
}

#[test]
fn the_uri_table_agrees_with_the_full_check() {
    for b in 0..=255u8 {
        let text = String::from_utf8_lossy(&[b'a', b, b'b']).into_owned();
        let table = text.bytes().all(|c| URI_CHARACTERS[usize::from(c)]);
        if table {
            assert!(check_uri_reference(&text).is_ok(), "{b}");
        }
    }
    assert!(check_uri_reference("a%2Fb").is_ok());
    assert!(!URI_CHARACTERS[usize::from(b'%')]);
}

#[test]
fn keys_of_long_pairs_are_those_of_the_parts() {
    let long = "s".repeat(300);
    let mut hasher = Sha256::new();
    hasher.update(b"purser-event-key-v1");
    hasher.update((long.len() as u64).to_be_bytes());
    hasher.update(long.as_bytes());
    hasher.update(1u64.to_be_bytes());
    hasher.update(b"1");
    let digest = hasher.finalize();
    assert_eq!(EventKey::of(&long, "1").as_bytes()[..], digest[..16]);
    // The short form, against a value computed once with standard tools.
    assert_eq!(
        EventKey::of("polaris://westeurope/clusters/c-00220", "c-00220-1").to_string(),
        key_with_parts("polaris://westeurope/clusters/c-00220", "c-00220-1")
    );
}

fn key_with_parts(source: &str, id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"purser-event-key-v1");
    hasher.update((source.len() as u64).to_be_bytes());
    hasher.update(source.as_bytes());
    hasher.update((id.len() as u64).to_be_bytes());
    hasher.update(id.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

#[test]
fn stop_bytes_find_the_first_quote_backslash_or_control_byte() {
    for position in 0..8 {
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for filler in [b'a', b' ', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                let mut word = [filler; 8];
                word[position] = stop;
                // A later stop byte must not hide the first.
                if position < 7 {
                    word[7] = b'"';
                }
                let flagged = stop_bytes(u64::from_le_bytes(word));
                assert_eq!(
                    (flagged.trailing_zeros() / 8) as usize,
                    position,
                    "{word:?}"
                );
            }
        }
    }
    for filler in [b'a', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']', b'~'] {
        assert_eq!(stop_bytes(u64::from_le_bytes([filler; 8])), 0, "{filler}");
    }
}

#[test]
fn texts_compare_as_slices_do() {
    let texts: Vec<Vec<u8>> = (0..40)
        .map(|n| (0..n).map(|i| b'a' + (i % 7) as u8).collect())
        .collect();
    for a in &texts {
        assert!(same_text(a, a));
        for b in &texts {
            assert_eq!(same_text(a, b), a == b);
        }
        // One byte changed anywhere is seen.
        for at in 0..a.len() {
            let mut other = a.clone();
            other[at] ^= 0x20;
            assert!(!same_text(a, &other), "{a:?} at {at}");
        }
    }
}
