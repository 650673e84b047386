//! Each marketplace's metering rules, in one place, each with where it comes from and
//! when it was read. These contracts change under their sellers' feet (AWS changed its
//! window three times and its quantity field in October 2026): the next change should
//! be one edit here, and the tests that pin each rule say what it changed.
//!
//! The machine-readable contracts (`contracts/` at the repository's root) state batch
//! sizes and field shapes; the fakes read those files, and a test checks that these
//! figures agree with them. Time windows and quotas are stated only in prose; their
//! sources are quoted beside each.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::{Binding, Route};
use crate::account::Marketplace;
use crate::commercial::BillingPeriod;

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub what: &'static str,
    pub reference: &'static str,
    /// The day the source was read (ISO 8601).
    pub read_on: &'static str,
}

/// How a marketplace takes quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    /// A decimal with at most this many fractional digits (AWS `QuantityAsDecimal`).
    Decimal { max_fraction_digits: u32 },
    /// A JSON number (Azure `quantity`, a double). Sent with at most this many
    /// fractional digits so that the text is exact in binary's 15 significant digits.
    Number { max_fraction_digits: u32 },
    /// Google's metric values: `int64Value` or `doubleValue`, as the metric is defined
    /// in the service configuration; whole units are sent as `int64Value`.
    MetricValue { max_fraction_digits: u32 },
}

impl QuantityFormat {
    pub fn max_fraction_digits(self) -> u32 {
        match self {
            QuantityFormat::Decimal {
                max_fraction_digits,
            }
            | QuantityFormat::Number {
                max_fraction_digits,
            }
            | QuantityFormat::MetricValue {
                max_fraction_digits,
            } => max_fraction_digits,
        }
    }
}

/// One marketplace's metering contract, as Purser relies on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub marketplace: Marketplace,
    /// Records (AWS), events (Azure) or operations (Google) in one request.
    pub max_records_per_request: usize,
    /// The largest request body the marketplace takes.
    pub max_request_bytes: usize,
    /// The published request-rate quota, if any.
    pub requests_per_second: Option<u32>,
    /// How long after the hour's start a record for it is still taken.
    pub window_after_hour_start: SignedDuration,
    /// Records for a month are taken only until this long after the next month
    /// begins, in this zone (AWS: 06:00 UTC on the 1st; Google: 01:00 US Pacific).
    pub month_end_cutoff: Option<(SignedDuration, &'static str)>,
    /// Whether an hour without billable usage is still reported, with zero.
    pub report_zero_hours: bool,
    /// Whether a zero quantity is refused (Azure: `InvalidQuantity`).
    pub refuses_zero: bool,
    pub quantity: QuantityFormat,
    /// Whether a quantity that missed its window may be added to a later hour's record.
    pub carries_missed_usage: bool,
    /// Raise the alarm when a record is still undelivered this long before its window
    /// closes.
    pub alert_before_deadline: SignedDuration,
    pub sources: &'static [Source],
}

const READ_ON: &str = "2026-11-23";

const AWS_SOURCES: &[Source] = &[
    Source {
        what: "at most 25 records a request (UsageRecordList max 25); QuantityAsDecimal pattern ^(0|[1-9][0-9]{0,9})(\\.[0-9]{1,6})?$; Quantity deprecated since 2026-10-20; ProductCode only with CustomerIdentifier, LicenseArn per record with CustomerAWSAccountId",
        reference: "contracts/aws/meteringmarketplace.service-2.json (botocore 1.44.5), BatchMeterUsage",
        read_on: READ_ON,
    },
    Source {
        what: "records are not accepted 24 hours or more after the event; the previous month's records until 06:00 UTC on the first day of the month; one out-of-range record refuses the whole request",
        reference: "contracts/aws/meteringmarketplace.service-2.json, BatchMeterUsage documentation and TimestampOutOfBoundsException",
        read_on: READ_ON,
    },
    Source {
        what: "request body under 1 MB",
        reference: "https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html",
        read_on: READ_ON,
    },
    Source {
        what: "BatchMeterUsage quota: 10 requests a second per account and region",
        reference: "https://docs.aws.amazon.com/marketplace/latest/APIReference/metering-service-quotas.html",
        read_on: READ_ON,
    },
    Source {
        what: "report every hour for every customer, with quantity 0 when there is no usage; meter only usage beyond the contract's entitlements",
        reference: "https://docs.aws.amazon.com/marketplace/latest/userguide/metering-for-usage.html",
        read_on: READ_ON,
    },
];

const AZURE_SOURCES: &[Source] = &[
    Source {
        what: "batchUsageEvent takes 1 to 25 events ({\"request\": [...]}), api-version 2018-08-31",
        reference: "contracts/azure/meteringapi.v1.json (Microsoft.Marketplace.Metering 2018-08-31)",
        read_on: READ_ON,
    },
    Source {
        what: "one usage event per resource, dimension and hour; effectiveStartTime up to 24 hours back; quantity above zero; per-event statuses Accepted, Duplicate (with acceptedMessage), Expired, ResourceNotFound, ResourceNotAuthorized, ResourceNotActive, InvalidDimension, InvalidQuantity, BadArgument, Error",
        reference: "https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis",
        read_on: READ_ON,
    },
    Source {
        what: "usage that missed the 24-hour window may be added to a later event; only usage above the base fee is sent",
        reference: "https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis-faq",
        read_on: READ_ON,
    },
];

const GCP_SOURCES: &[Source] = &[
    Source {
        what: "services.check then services.report with the same operationId; UUID version 5 for operations computed from existing information; ReportRequest no larger than 1 MB",
        reference: "contracts/gcp/servicecontrol.v1.json (Service Control v1, revision 20261015), Operation and ReportRequest",
        read_on: READ_ON,
    },
    Source {
        what: "report usage within one hour of it being generated; a report's start time equals the previous report's end time; month-end reports by 1 AM US Pacific on the next day",
        reference: "https://cloud.google.com/marketplace/docs/partners/integrated-saas/best-practices-reporting",
        read_on: READ_ON,
    },
];

/// Tackle.io's metering API, read on 2026-12-01. Facts the documentation available
/// here did not state are marked unverified in the rules that rely on them.
const TACKLE_READ_ON: &str = "2026-12-01";

const TACKLE_SOURCES: &[Source] = &[
    Source {
        what: "PUT /v1/metering/usage-records, one record a request ({cloud, product_id, customer_id, start_time, [end_time for gcp], [scheduled_at], dimension: {name, quantity}}); PUT creates or updates the record of product, dimension, customer and hour of start_time until it is sent, then answers 409; POST creates duplicates and is never used",
        reference: "https://developers.tackle.io/docs/create-a-metering-record; reference v1-create-metering-usage-records",
        read_on: TACKLE_READ_ON,
    },
    Source {
        what: "meter only positive non-zero values (\"Sending a metering value of 0 quantity for any dimension will cause an error\"); Tackle itself sends zero records every hour it received none for; one payload per product, customer and dimension per hour",
        reference: "https://developers.tackle.io/docs/metering-best-practices",
        read_on: TACKLE_READ_ON,
    },
    Source {
        what: "UNVERIFIED: the quantity's digits (taken as a JSON number with at most 6 fraction digits, as the clouds take), the request quota (none published: concurrency is configurable), the answer's body (an `id` read when present)",
        reference: "not stated in developers.tackle.io as read; re-check with Tackle",
        read_on: TACKLE_READ_ON,
    },
];

impl Rules {
    /// The rules for records of `cloud` sent through Tackle.io: the cloud's window,
    /// month-end cutoff, carrying and alarm timing still bind (Tackle forwards to it,
    /// and the cloud refuses what is late), but Tackle's own contract decides the
    /// request: one record a PUT, no zero records (Tackle errors on 0 and fills quiet
    /// hours with zeros itself), and no published quota. `None` for a cloud Tackle
    /// does not forward to.
    pub fn through_tackle(cloud: Marketplace) -> Option<Rules> {
        let direct = Rules::of(cloud)?;
        Some(Rules {
            max_records_per_request: 1,
            // One small JSON object per request; the clouds' limit is far above it.
            max_request_bytes: direct.max_request_bytes,
            requests_per_second: None,
            report_zero_hours: false,
            refuses_zero: true,
            // Unverified (see TACKLE_SOURCES): Tackle's example quantity is a JSON
            // integer; fractions are sent as a JSON number of at most six digits,
            // which every cloud behind it takes.
            quantity: QuantityFormat::Number {
                max_fraction_digits: 6,
            },
            sources: TACKLE_SOURCES,
            ..direct
        })
    }

    /// The rules for an entitlement of an offer sold through `offer_marketplace`
    /// bound by `binding`: the cloud's own, or through Tackle.
    pub fn for_binding(offer_marketplace: Marketplace, binding: &Binding) -> Option<Rules> {
        match binding.route() {
            Route::Direct => Rules::of(offer_marketplace),
            Route::Tackle => Rules::through_tackle(offer_marketplace),
        }
    }

    /// The rules Purser follows for `marketplace`; `None` for direct sales, which are
    /// invoiced through the ERP, not a marketplace.
    pub fn of(marketplace: Marketplace) -> Option<Rules> {
        match marketplace {
            Marketplace::Aws => Some(Rules {
                marketplace,
                max_records_per_request: 25,
                max_request_bytes: 1_000_000,
                requests_per_second: Some(10),
                window_after_hour_start: SignedDuration::from_hours(24),
                month_end_cutoff: Some((SignedDuration::from_hours(6), "UTC")),
                report_zero_hours: true,
                refuses_zero: false,
                quantity: QuantityFormat::Decimal {
                    max_fraction_digits: 6,
                },
                carries_missed_usage: true,
                alert_before_deadline: SignedDuration::from_hours(12),
                sources: AWS_SOURCES,
            }),
            Marketplace::Azure => Some(Rules {
                marketplace,
                max_records_per_request: 25,
                max_request_bytes: 1_000_000,
                requests_per_second: None,
                window_after_hour_start: SignedDuration::from_hours(24),
                month_end_cutoff: None,
                report_zero_hours: false,
                refuses_zero: true,
                quantity: QuantityFormat::Number {
                    max_fraction_digits: 6,
                },
                carries_missed_usage: true,
                alert_before_deadline: SignedDuration::from_hours(12),
                sources: AZURE_SOURCES,
            }),
            // Google asks for usage within an hour of it being generated: an hour's
            // usage is complete at its end, so the window is its end plus one hour.
            // Closing waits for the grace (15 minutes by default), which leaves
            // three quarters of an hour; the alarm goes off halfway through that.
            Marketplace::Gcp => Some(Rules {
                marketplace,
                max_records_per_request: 100,
                max_request_bytes: 1_000_000,
                requests_per_second: None,
                window_after_hour_start: SignedDuration::from_hours(2),
                month_end_cutoff: Some((SignedDuration::from_hours(1), "America/Los_Angeles")),
                // Each report's start is the previous one's end, so quiet hours are
                // reported as zero rather than skipped.
                report_zero_hours: true,
                refuses_zero: false,
                quantity: QuantityFormat::MetricValue {
                    max_fraction_digits: 6,
                },
                carries_missed_usage: true,
                alert_before_deadline: SignedDuration::from_mins(20),
                sources: GCP_SOURCES,
            }),
            Marketplace::Direct => None,
        }
    }

    /// The last instant (exclusive) at which a record for `hour` is still taken.
    pub fn deadline(&self, hour: Timestamp) -> Timestamp {
        let window = hour
            .checked_add(self.window_after_hour_start)
            .unwrap_or(Timestamp::MAX);
        match self.month_end_cutoff {
            Some((after, zone)) => window.min(month_end_cutoff(hour, after, zone)),
            None => window,
        }
    }

    /// When to raise the alarm about an undelivered record for `hour`.
    pub fn alert_at(&self, hour: Timestamp) -> Timestamp {
        self.deadline(hour)
            .checked_sub(self.alert_before_deadline)
            .unwrap_or(hour)
    }

    /// `quantity` cut to what the marketplace takes, and the part carried to the next
    /// hour (never negative, always below one unit of the last digit sent).
    pub fn quantize(&self, quantity: Decimal) -> (Decimal, Decimal) {
        let digits = self.quantity.max_fraction_digits();
        let sent = quantity
            .max(Decimal::ZERO)
            .round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToZero)
            .normalize();
        (sent, (quantity - sent).max(Decimal::ZERO).normalize())
    }
}

/// The cutoff for records of the month containing `hour`: `after` past the start of
/// the next month, as a wall-clock time in `zone` (Google's 1 AM Pacific moves with
/// daylight saving; AWS's 06:00 is UTC).
fn month_end_cutoff(hour: Timestamp, after: SignedDuration, zone: &str) -> Timestamp {
    let next_month = BillingPeriod::containing(hour).end;
    let Ok(tz) = TimeZone::get(zone) else {
        return next_month.checked_add(after).unwrap_or(Timestamp::MAX);
    };
    // The first day of the next month in UTC, at midnight in the zone, plus `after`
    // as wall-clock time.
    let date: Date = next_month.to_zoned(TimeZone::UTC).date();
    let local_midnight = date.to_zoned(tz.clone()).map(|z| z.timestamp());
    match local_midnight.and_then(|midnight| {
        let wall = midnight.to_zoned(tz.clone()).datetime();
        let wall = wall.checked_add(after)?;
        wall.to_zoned(tz).map(|z| z.timestamp())
    }) {
        Ok(at) => at,
        Err(_) => next_month.checked_add(after).unwrap_or(Timestamp::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn rules(m: Marketplace) -> Rules {
        Rules::of(m).expect("a marketplace")
    }

    #[test]
    fn aws_takes_records_for_24_hours_but_last_month_only_until_six_on_the_first() {
        let aws = rules(Marketplace::Aws);
        assert_eq!(
            aws.deadline(ts("2026-11-10T13:00:00Z")),
            ts("2026-11-11T13:00:00Z")
        );
        // 23:00 on the last day: 24 hours would be 23:00 on the 1st; the month ends first.
        assert_eq!(
            aws.deadline(ts("2026-11-30T23:00:00Z")),
            ts("2026-12-01T06:00:00Z")
        );
        assert_eq!(
            aws.deadline(ts("2026-11-30T02:00:00Z")),
            ts("2026-12-01T02:00:00Z")
        );
        assert_eq!(
            aws.alert_at(ts("2026-11-10T13:00:00Z")),
            ts("2026-11-11T01:00:00Z")
        );
    }

    #[test]
    fn google_takes_an_hour_until_an_hour_after_its_end_and_the_month_until_1am_pacific() {
        let gcp = rules(Marketplace::Gcp);
        assert_eq!(
            gcp.deadline(ts("2026-11-10T13:00:00Z")),
            ts("2026-11-10T15:00:00Z")
        );
        // The month cutoff is 1 AM Pacific: 09:00 UTC in December (PST, UTC-8) and
        // 08:00 UTC in July (PDT, UTC-7); it never binds before the two hours do, but
        // it must move with daylight saving.
        assert_eq!(
            month_end_cutoff(
                ts("2026-11-30T23:00:00Z"),
                SignedDuration::from_hours(1),
                "America/Los_Angeles"
            ),
            ts("2026-12-01T09:00:00Z")
        );
        assert_eq!(
            month_end_cutoff(
                ts("2026-06-30T23:00:00Z"),
                SignedDuration::from_hours(1),
                "America/Los_Angeles"
            ),
            ts("2026-07-01T08:00:00Z")
        );
    }

    #[test]
    fn azure_takes_24_hours_and_refuses_zero() {
        let azure = rules(Marketplace::Azure);
        assert_eq!(
            azure.deadline(ts("2026-11-30T23:00:00Z")),
            ts("2026-12-01T23:00:00Z")
        );
        assert!(azure.refuses_zero);
        assert!(!azure.report_zero_hours);
        assert!(rules(Marketplace::Aws).report_zero_hours);
        assert!(Rules::of(Marketplace::Direct).is_none());
    }

    #[test]
    fn quantities_are_cut_to_the_digits_sent_and_the_rest_carried() {
        let aws = rules(Marketplace::Aws);
        let (sent, carried) = aws.quantize(Decimal::from_str("1.23456789").expect("d"));
        assert_eq!(sent.to_string(), "1.234567");
        assert_eq!(carried.to_string(), "0.00000089");
        assert_eq!(sent + carried, Decimal::from_str("1.23456789").expect("d"));
        let (sent, carried) = aws.quantize(Decimal::from_str("17.000").expect("d"));
        assert_eq!(
            (sent.to_string(), carried.to_string()),
            ("17".into(), "0".into())
        );
    }

    #[test]
    fn through_tackle_the_clouds_windows_bind_but_tackles_request_rules_apply() {
        for cloud in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws] {
            let direct = rules(cloud);
            let tackle = Rules::through_tackle(cloud).expect("tackle rules");
            // The cloud still decides when an hour is too late.
            assert_eq!(tackle.marketplace, cloud);
            assert_eq!(
                tackle.window_after_hour_start,
                direct.window_after_hour_start
            );
            assert_eq!(tackle.month_end_cutoff, direct.month_end_cutoff);
            assert_eq!(tackle.alert_before_deadline, direct.alert_before_deadline);
            assert_eq!(tackle.carries_missed_usage, direct.carries_missed_usage);
            let hour = ts("2026-11-30T23:00:00Z");
            assert_eq!(tackle.deadline(hour), direct.deadline(hour));
            // Tackle's own: one record a PUT, never a zero, no published quota.
            assert_eq!(tackle.max_records_per_request, 1);
            assert!(!tackle.report_zero_hours);
            assert!(tackle.refuses_zero);
            assert_eq!(tackle.requests_per_second, None);
            assert_eq!(
                tackle.quantity,
                QuantityFormat::Number {
                    max_fraction_digits: 6
                }
            );
            assert_eq!(tackle.sources, TACKLE_SOURCES);
            let (sent, carried) = tackle.quantize(Decimal::from_str("2.1234567").expect("d"));
            assert_eq!(
                (sent.to_string(), carried.to_string()),
                ("2.123456".into(), "0.0000007".into())
            );
        }
        assert!(Rules::through_tackle(Marketplace::Direct).is_none());
        assert!(
            TACKLE_SOURCES
                .iter()
                .any(|s| s.what.starts_with("UNVERIFIED"))
        );
    }

    #[test]
    fn the_binding_chooses_direct_or_tackle_rules() {
        let tackle = Binding::Tackle {
            cloud: Marketplace::Aws,
            product_id: "p".into(),
            customer_id: "c".into(),
        };
        let direct = Binding::Aws {
            customer_aws_account_id: "123456789012".into(),
            license_arn: "arn:aws:license-manager::123456789012:license:l-1".into(),
        };
        assert_eq!(
            Rules::for_binding(Marketplace::Aws, &tackle),
            Rules::through_tackle(Marketplace::Aws)
        );
        assert_eq!(
            Rules::for_binding(Marketplace::Aws, &direct),
            Rules::of(Marketplace::Aws)
        );
        assert!(Rules::for_binding(Marketplace::Direct, &tackle).is_none());
    }

    #[test]
    fn every_marketplace_rule_cites_a_dated_source() {
        let tackle = [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws]
            .map(|m| Rules::through_tackle(m).expect("tackle rules"));
        for r in [Marketplace::Gcp, Marketplace::Azure, Marketplace::Aws]
            .map(rules)
            .into_iter()
            .chain(tackle)
        {
            let m = r.marketplace;
            assert!(!r.sources.is_empty());
            for s in r.sources {
                assert!(Date::from_str(s.read_on).is_ok(), "{m}: {}", s.read_on);
                assert!(!s.reference.is_empty() && !s.what.is_empty());
            }
            assert!(r.alert_at(ts("2026-11-10T13:00:00Z")) > ts("2026-11-10T14:00:00Z"));
        }
    }
}
