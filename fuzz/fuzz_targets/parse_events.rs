//! Fuzzes the usage-event parser and the meters that read its events.
//!
//! Whatever the bytes, for every framing: parsing never panics; each event is either
//! kept or refused, never both, and refusals name an index inside the body; a kept
//! event written back as CloudEvents JSON parses to the same event; and meters read
//! kept events without panicking, giving the same aggregate whatever the order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use purser_core::events::{Framing, parse_batch};
use purser_core::meter::{HourAggregate, MeterDraft};
use purser_core::time::Window;

fuzz_target!(|body: &[u8]| {
    let meters: Vec<_> = [
        ("sum", Some("$.bytes"), None),
        ("time_weighted_avg", Some("$.bytes"), Some("$.cluster")),
        ("latest", Some("$.n.value"), None),
        ("count", None, None),
    ]
    .into_iter()
    .filter_map(|(aggregation, path, group)| {
        MeterDraft {
            name: format!("m.{aggregation}"),
            event_type: "t".into(),
            value_path: path.map(str::to_owned),
            aggregation: aggregation.into(),
            unit: "bytes".into(),
            group_by: group.map(str::to_owned),
            ..MeterDraft::default()
        }
        .validate()
        .ok()
    })
    .collect();
    assert_eq!(meters.len(), 4, "the fuzz meters are valid");

    for framing in [
        Framing::Single,
        Framing::Batch,
        Framing::Ndjson,
        Framing::Json,
    ] {
        let Ok(parsed) = parse_batch(body, framing) else {
            continue;
        };
        let again = parse_batch(body, framing).expect("parsing is deterministic");
        assert_eq!(again.events.len(), parsed.events.len());
        let kept: Vec<usize> = parsed.events.iter().map(|(i, _)| *i).collect();
        let n = kept.len() + parsed.n_rejected_events();
        for rejection in &parsed.rejected {
            assert!(
                rejection.index < n.max(1),
                "a refusal names an event of the body"
            );
            assert!(
                !kept.contains(&rejection.index),
                "an event is kept or refused"
            );
        }
        for (_, event) in &parsed.events {
            let json = serde_json::to_string(event).expect("an event serialises");
            let back = parse_batch(json.as_bytes(), Framing::Single).expect("its JSON parses");
            assert_eq!(back.events.len(), 1, "its JSON is a valid event: {json}");
            let (_, back) = &back.events[0];
            assert_eq!(back.key(), event.key());
            assert_eq!(back.time(), event.time());
            assert_eq!(back.subject(), event.subject());
            assert_eq!(back.data(), event.data());
            for meter in &meters {
                let _ = meter.measure(event);
            }
        }
        // The same samples in two orders aggregate alike.
        for meter in &meters {
            let samples: Vec<_> = parsed
                .events
                .iter()
                .filter_map(|(_, e)| meter.measure(e).ok())
                .collect();
            let Some(first) = samples.first() else {
                continue;
            };
            let hour = Window::hour(first.sample.time);
            let mut forward = HourAggregate::new(meter.aggregation, hour);
            let mut backward = HourAggregate::new(meter.aggregation, hour);
            let in_hour: Vec<_> = samples
                .iter()
                .filter(|m| hour.contains(m.sample.time))
                .map(|m| m.sample)
                .collect();
            let ok_forward = in_hour.iter().try_for_each(|s| forward.add(*s)).is_ok();
            let ok_backward = in_hour
                .iter()
                .rev()
                .try_for_each(|s| backward.add(*s))
                .is_ok();
            assert_eq!(ok_forward, ok_backward);
            if ok_forward {
                assert_eq!(forward.value(None), backward.value(None));
            }
        }
    }
});
