//! How a usage slice keeps what its events contribute to the meters.
//!
//! A slice holds the accepted events of one batch that belong to one hour and were
//! booked into one hour. Two columns describe them: `keys`, the events' 16-byte keys
//! in ascending order (deduplication reads only these), and `contributions`, what
//! each event gives each meter (closing, traces and verification read these).
//!
//! Encodings, recorded per slice in `usage_slices.encoding`:
//! - [`ENCODING_ENTRIES`] (1, the first releases): one postcard record per
//!   contribution with every name spelled out and the value as text, lz4-compressed.
//!   Still read, never written.
//! - [`ENCODING_PACKED`] (2): postcard with tables of the account ids and the meter
//!   and group names the slice uses, then one record per event *in the order of the
//!   keys column* (so the key is not repeated) and its contributions, each naming its
//!   meter and group by position and holding its value as an exact decimal's
//!   mantissa and scale. Integers are varints, so a telemetry event takes about 25
//!   bytes; closing decodes it without parsing text or allocating per event, which is
//!   what closing an hour of tens of thousands of events spends its time on.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use purser_core::events::EventKey;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Contributions as postcard records of [`EntryV1`], lz4-compressed.
pub(crate) const ENCODING_ENTRIES: i64 = 1;
/// Contributions packed per event, in key order ([`Packed`]).
pub(crate) const ENCODING_PACKED: i64 = 2;

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("usage slice: {reason}"))
}

/// One event's contribution to one meter, as encoding 1 stored it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct EntryV1 {
    key: [u8; 16],
    time: i64,
    account: String,
    meter: String,
    group: Option<String>,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct Packed<'a> {
    #[serde(borrow)]
    accounts: Vec<&'a str>,
    /// Meter and group names, one table for both.
    #[serde(borrow)]
    names: Vec<&'a str>,
    /// Event times are stored as microseconds after this one.
    base_time: i64,
    /// In the order of the slice's keys.
    events: Vec<PackedEvent>,
    contributions: Vec<PackedContribution>,
}

#[derive(Serialize, Deserialize)]
struct PackedEvent {
    after_base: u64,
    account: u32,
    n_contributions: u32,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct PackedContribution {
    meter: u32,
    /// 0 when the meter has no group, else the name's position + 1.
    group: u32,
    mantissa: i128,
    scale: u32,
}

/// A slice's events as read back: names once in tables, events and contributions
/// referring to them by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedSlice<'a> {
    pub accounts: Vec<Cow<'a, str>>,
    pub names: Vec<Cow<'a, str>>,
    pub events: Vec<DecodedEvent>,
    pub contributions: Vec<DecodedContribution>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedEvent {
    pub key: EventKey,
    /// Microseconds since the epoch.
    pub time: i64,
    /// Position in `accounts`.
    pub account: u32,
    /// Its contributions' positions in `contributions`.
    pub contributions: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedContribution {
    /// Position in `names`.
    pub meter: u32,
    /// Position in `names`.
    pub group: Option<u32>,
    pub value: Decimal,
}

impl<'a> DecodedSlice<'a> {
    pub fn name(&self, position: u32) -> Result<&str, StoreError> {
        self.names
            .get(position as usize)
            .map(|n| &**n)
            .ok_or_else(|| corrupt(format!("name {position} is not in the slice's table")))
    }

    pub fn account(&self, position: u32) -> Result<&str, StoreError> {
        self.accounts
            .get(position as usize)
            .map(|n| &**n)
            .ok_or_else(|| corrupt(format!("account {position} is not in the slice's table")))
    }

    /// The contributions of one event.
    pub fn contributions_of(&self, event: &DecodedEvent) -> &[DecodedContribution] {
        self.contributions
            .get(event.contributions.clone())
            .unwrap_or_default()
    }
}

/// The keys column: 16 bytes a key.
pub(crate) fn keys_of(blob: &[u8]) -> impl Iterator<Item = EventKey> + '_ {
    blob.chunks_exact(16).map(|chunk| {
        let mut key = [0u8; 16];
        key.copy_from_slice(chunk);
        EventKey::from_bytes(key)
    })
}

/// Reads a slice's two columns in either encoding.
pub(crate) fn decode<'a>(
    encoding: i64,
    keys: &'a [u8],
    contributions: &'a [u8],
) -> Result<DecodedSlice<'a>, StoreError> {
    if !keys.len().is_multiple_of(16) {
        return Err(corrupt("its keys are not 16 bytes each"));
    }
    match encoding {
        ENCODING_PACKED => decode_packed(keys, contributions),
        ENCODING_ENTRIES => decode_entries(contributions),
        other => Err(corrupt(format!("encoding {other} is not one Purser knows"))),
    }
}

fn decode_packed<'a>(keys: &'a [u8], blob: &'a [u8]) -> Result<DecodedSlice<'a>, StoreError> {
    let packed: Packed<'a> = postcard::from_bytes(blob).map_err(corrupt)?;
    if packed.events.len() * 16 != keys.len() {
        return Err(corrupt(format!(
            "it holds {} events but {} keys",
            packed.events.len(),
            keys.len() / 16
        )));
    }
    let mut contributions = Vec::with_capacity(packed.contributions.len());
    for c in &packed.contributions {
        let value = Decimal::try_from_i128_with_scale(c.mantissa, c.scale).map_err(corrupt)?;
        if c.meter as usize >= packed.names.len() || c.group as usize > packed.names.len() {
            return Err(corrupt(
                "a contribution names a meter or group not in its table",
            ));
        }
        contributions.push(DecodedContribution {
            meter: c.meter,
            group: c.group.checked_sub(1),
            value,
        });
    }
    let mut events = Vec::with_capacity(packed.events.len());
    let mut next = 0usize;
    for (event, key) in packed.events.iter().zip(keys_of(keys)) {
        let end = next + event.n_contributions as usize;
        if end > contributions.len() || event.account as usize >= packed.accounts.len() {
            return Err(corrupt("an event refers past the slice's tables"));
        }
        let time = i64::try_from(event.after_base)
            .ok()
            .and_then(|after| packed.base_time.checked_add(after))
            .ok_or_else(|| corrupt("an event's time is out of range"))?;
        events.push(DecodedEvent {
            key,
            time,
            account: event.account,
            contributions: next..end,
        });
        next = end;
    }
    if next != contributions.len() {
        return Err(corrupt("it holds contributions of no event"));
    }
    Ok(DecodedSlice {
        accounts: packed.accounts.into_iter().map(Cow::Borrowed).collect(),
        names: packed.names.into_iter().map(Cow::Borrowed).collect(),
        events,
        contributions,
    })
}

/// Encoding 1: entries in arrival order, one per contribution; grouped here into
/// events in key order, as encoding 2 gives them.
fn decode_entries(blob: &[u8]) -> Result<DecodedSlice<'static>, StoreError> {
    let bytes = lz4_flex::decompress_size_prepended(blob).map_err(corrupt)?;
    let entries: Vec<EntryV1> = postcard::from_bytes(&bytes).map_err(corrupt)?;
    let mut writer = SliceWriter::default();
    let mut by_key: std::collections::BTreeMap<[u8; 16], Vec<&EntryV1>> = Default::default();
    for entry in &entries {
        by_key.entry(entry.key).or_default().push(entry);
    }
    for (key, entries) in by_key {
        let first = entries[0];
        let mut contributions = Vec::with_capacity(entries.len());
        for e in &entries {
            let value = e
                .value
                .parse::<Decimal>()
                .map_err(|err| corrupt(format!("value `{}`: {err}", e.value)))?;
            contributions.push((e.meter.as_str(), e.group.as_deref(), value));
        }
        writer.push(
            EventKey::from_bytes(key),
            first.time,
            &first.account,
            contributions,
        );
    }
    let (keys, packed) = writer.finish()?;
    let decoded = decode_packed(&keys, &packed)?;
    Ok(DecodedSlice {
        accounts: decoded
            .accounts
            .into_iter()
            .map(|a| Cow::Owned(a.into_owned()))
            .collect(),
        names: decoded
            .names
            .into_iter()
            .map(|n| Cow::Owned(n.into_owned()))
            .collect(),
        events: decoded.events,
        contributions: decoded.contributions,
    })
}

/// A name with the number its caller gives it (a position in a batch's table of
/// subjects or names): [`SliceWriter::push_numbered`] finds a name's place in the
/// slice's tables by that number, without hashing the name.
pub(crate) type Numbered<'a> = (u32, &'a str);

/// Builds a slice in encoding 2 from events in any order.
#[derive(Default)]
pub(crate) struct SliceWriter<'a> {
    accounts: Vec<&'a str>,
    names: Vec<&'a str>,
    /// By the caller's number: the position in `accounts` (or `names`) plus one, 0
    /// while unused.
    account_at: Vec<u32>,
    name_at: Vec<u32>,
    /// Numbers for names given as text alone ([`SliceWriter::push`]).
    numbers: HashMap<&'a str, u32>,
    /// key, time, account, contributions' range
    events: Vec<(EventKey, i64, u32, Range<usize>)>,
    contributions: Vec<PackedContribution>,
}

/// The position of a numbered name in `table`, added if new.
fn place<'a>(table: &mut Vec<&'a str>, at: &mut Vec<u32>, (number, name): Numbered<'a>) -> u32 {
    let number = number as usize;
    if number >= at.len() {
        at.resize(number + 1, 0);
    }
    if at[number] == 0 {
        table.push(name);
        at[number] = table.len() as u32;
    }
    at[number] - 1
}

impl<'a> SliceWriter<'a> {
    fn number(&mut self, name: &'a str) -> Numbered<'a> {
        let next = self.numbers.len() as u32;
        (*self.numbers.entry(name).or_insert(next), name)
    }

    /// Adds one event: its key, time (microseconds), account id and what it gives
    /// each meter (meter, group, value).
    pub fn push(
        &mut self,
        key: EventKey,
        time: i64,
        account: &'a str,
        contributions: impl IntoIterator<Item = (&'a str, Option<&'a str>, Decimal)>,
    ) {
        let account = self.number(account);
        let contributions: Vec<_> = contributions
            .into_iter()
            .map(|(meter, group, value)| {
                (
                    self.number(meter),
                    group.map(|g| self.number(g)),
                    value.normalize(),
                )
            })
            .collect();
        self.push_numbered(key, time, account, contributions);
    }

    /// [`Self::push`] with numbered names (accounts numbered apart from meter and
    /// group names) and values already normalised.
    pub fn push_numbered(
        &mut self,
        key: EventKey,
        time: i64,
        account: Numbered<'a>,
        contributions: impl IntoIterator<Item = (Numbered<'a>, Option<Numbered<'a>>, Decimal)>,
    ) {
        let account = place(&mut self.accounts, &mut self.account_at, account);
        let start = self.contributions.len();
        for (meter, group, value) in contributions {
            let meter = place(&mut self.names, &mut self.name_at, meter);
            let group = group.map_or(0, |g| place(&mut self.names, &mut self.name_at, g) + 1);
            self.contributions.push(PackedContribution {
                meter,
                group,
                mantissa: value.mantissa(),
                scale: value.scale(),
            });
        }
        self.events
            .push((key, time, account, start..self.contributions.len()));
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// The keys column (sorted) and the contributions column.
    pub fn finish(mut self) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        self.events.sort_unstable_by_key(|e| e.0);
        let base_time = self.events.iter().map(|e| e.1).min().unwrap_or(0);
        let mut keys = Vec::with_capacity(self.events.len() * 16);
        let mut events = Vec::with_capacity(self.events.len());
        let mut contributions = Vec::with_capacity(self.contributions.len());
        for (key, time, account, range) in &self.events {
            keys.extend_from_slice(key.as_bytes());
            events.push(PackedEvent {
                after_base: time.abs_diff(base_time),
                account: *account,
                n_contributions: range.len() as u32,
            });
            contributions
                .extend_from_slice(self.contributions.get(range.clone()).unwrap_or_default());
        }
        let packed = Packed {
            accounts: self.accounts,
            names: self.names,
            base_time,
            events,
            contributions,
        };
        let bytes = postcard::to_stdvec(&packed)
            .map_err(|e| StoreError::Backend(format!("cannot encode a usage slice: {e}")))?;
        Ok((keys, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> EventKey {
        EventKey::of("test", &n.to_string())
    }

    #[test]
    fn packed_round_trip_gives_events_in_key_order_with_exact_values() {
        let mut writer = SliceWriter::default();
        let values = [
            "12.500",
            "0",
            "340282366920938463463374607",
            "0.0000000000000000000000000001",
        ];
        let parsed: Vec<Decimal> = values.iter().map(|v| v.parse().unwrap()).collect();
        writer.push(
            key(3),
            1_000,
            "acct-b",
            [("written", None, parsed[0]), ("read", None, parsed[1])],
        );
        writer.push(
            key(1),
            900,
            "acct-a",
            [("capacity", Some("c-1"), parsed[2])],
        );
        writer.push(
            key(2),
            5_000,
            "acct-b",
            [("capacity", Some("c-2"), parsed[3])],
        );
        writer.push(key(4), 1_200, "acct-a", []);
        let (keys, blob) = writer.finish().unwrap();
        let slice = decode(ENCODING_PACKED, &keys, &blob).unwrap();
        let mut sorted = vec![key(1), key(2), key(3), key(4)];
        sorted.sort();
        let got: Vec<EventKey> = slice.events.iter().map(|e| e.key).collect();
        assert_eq!(got, sorted);
        let by_key: HashMap<EventKey, &DecodedEvent> =
            slice.events.iter().map(|e| (e.key, e)).collect();
        let e3 = by_key[&key(3)];
        assert_eq!(e3.time, 1_000);
        assert_eq!(slice.account(e3.account).unwrap(), "acct-b");
        let c3 = slice.contributions_of(e3);
        assert_eq!(c3.len(), 2);
        assert_eq!(slice.name(c3[0].meter).unwrap(), "written");
        assert_eq!(c3[0].group, None);
        assert_eq!(c3[0].value, parsed[0]);
        assert_eq!(c3[0].value.to_string(), "12.5", "normalised");
        let e2 = by_key[&key(2)];
        let c2 = slice.contributions_of(e2);
        assert_eq!(slice.name(c2[0].group.unwrap()).unwrap(), "c-2");
        assert_eq!(c2[0].value, parsed[3]);
        assert_eq!(slice.contributions_of(by_key[&key(1)])[0].value, parsed[2]);
        assert!(slice.contributions_of(by_key[&key(4)]).is_empty());
    }

    #[test]
    fn encoding_1_reads_as_the_same_events() {
        let entries = vec![
            EntryV1 {
                key: *key(2).as_bytes(),
                time: 7,
                account: "a".into(),
                meter: "m".into(),
                group: Some("g".into()),
                value: "1.50".into(),
            },
            EntryV1 {
                key: *key(1).as_bytes(),
                time: 5,
                account: "b".into(),
                meter: "m".into(),
                group: None,
                value: "3".into(),
            },
            EntryV1 {
                key: *key(2).as_bytes(),
                time: 7,
                account: "a".into(),
                meter: "n".into(),
                group: None,
                value: "2".into(),
            },
        ];
        let blob = lz4_flex::compress_prepend_size(&postcard::to_stdvec(&entries).unwrap());
        let mut keys: Vec<EventKey> = vec![key(1), key(2)];
        keys.sort();
        let key_bytes: Vec<u8> = keys.iter().flat_map(|k| *k.as_bytes()).collect();
        let old = decode(ENCODING_ENTRIES, &key_bytes, &blob).unwrap();

        let mut writer = SliceWriter::default();
        writer.push(
            key(2),
            7,
            "a",
            [
                ("m", Some("g"), "1.5".parse().unwrap()),
                ("n", None, Decimal::from(2)),
            ],
        );
        writer.push(key(1), 5, "b", [("m", None, Decimal::from(3))]);
        let (new_keys, new_blob) = writer.finish().unwrap();
        assert_eq!(new_keys, key_bytes);
        let new = decode(ENCODING_PACKED, &new_keys, &new_blob).unwrap();
        let flatten =
            |s: &DecodedSlice| -> Vec<(EventKey, i64, String, String, Option<String>, Decimal)> {
                s.events
                    .iter()
                    .flat_map(|e| {
                        s.contributions_of(e).iter().map(move |c| {
                            (
                                e.key,
                                e.time,
                                s.account(e.account).unwrap().to_owned(),
                                s.name(c.meter).unwrap().to_owned(),
                                c.group.map(|g| s.name(g).unwrap().to_owned()),
                                c.value,
                            )
                        })
                    })
                    .collect()
            };
        assert_eq!(flatten(&old), flatten(&new));
    }

    #[test]
    fn damaged_slices_are_reported_not_misread() {
        let mut writer = SliceWriter::default();
        writer.push(key(1), 5, "a", [("m", None, Decimal::ONE)]);
        writer.push(key(2), 6, "a", [("m", None, Decimal::TWO)]);
        let (keys, blob) = writer.finish().unwrap();
        // A key missing, a key too many, bytes cut short, an unknown encoding.
        assert!(decode(ENCODING_PACKED, &keys[..16], &blob).is_err());
        let mut more = keys.clone();
        more.extend_from_slice(key(3).as_bytes());
        assert!(decode(ENCODING_PACKED, &more, &blob).is_err());
        assert!(decode(ENCODING_PACKED, &keys, &blob[..blob.len() - 3]).is_err());
        assert!(decode(ENCODING_PACKED, &keys[..15], &blob).is_err());
        assert!(decode(9, &keys, &blob).is_err());
    }
}
