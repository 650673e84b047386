//! Metering on the pages: an account's usage against its commitment (with a chart of
//! its hourly usage), and the metering page (ingest, open and closed hours, late
//! adjustments, the quarantine).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use purser_core::{AccountScope, Permission};
use purser_store::metering::{Granularity, UsageOf, UsageRow};

use super::{Chrome, render, when};
use crate::auth::{Caller, PageCaller};
use crate::error::ApiError;
use crate::state::AppState;

/// How far back the account page charts hourly usage.
const CHART_HOURS: i64 = 24 * 7;

/// The account page's metering section.
pub struct AccountMetering {
    pub period: Vec<PeriodRow>,
    /// One chart per dimension (SVG made here, from numbers only).
    pub charts: Vec<Chart>,
    pub quarantine: Vec<QuarantineRow>,
}

pub struct PeriodRow {
    pub dimension: String,
    pub metered: String,
    pub committed: String,
    pub consumed: String,
    pub projected: String,
    /// Whether the projection goes beyond the commitment.
    pub projected_over: bool,
    pub overage_quantity: String,
    pub overage_amount: String,
    pub last_hour: String,
}

pub struct Chart {
    pub dimension: String,
    pub svg: String,
    pub hours: usize,
}

pub struct QuarantineRow {
    pub time: String,
    pub event_type: String,
    pub reason: String,
    pub detail: String,
    pub received_at: String,
}

/// The section for an account the scope has already been checked to see.
pub async fn account_metering(
    state: &AppState,
    scope: &AccountScope,
    account_id: &str,
    external_id: &str,
) -> Result<AccountMetering, ApiError> {
    let now = Timestamp::now();
    let period = state
        .store
        .period_usage(scope, account_id, now)
        .await?
        .into_iter()
        .map(|d| {
            let projected_over = matches!((d.projected, d.committed), (Some(p), Some(c)) if p > c);
            PeriodRow {
                metered: d.metered.to_string(),
                committed: d
                    .committed
                    .map(|c| c.normalize().to_string())
                    .unwrap_or_else(|| "—".into()),
                consumed: d
                    .consumed
                    .map(|c| c.normalize().to_string())
                    .unwrap_or_else(|| "—".into()),
                projected: d
                    .projected
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "—".into()),
                projected_over,
                overage_quantity: d.overage_quantity.normalize().to_string(),
                overage_amount: match &d.currency {
                    Some(currency) => format!("{} {currency}", d.overage_amount.round_dp(2)),
                    None => "—".into(),
                },
                last_hour: when(d.last_hour),
                dimension: d.dimension,
            }
        })
        .collect();
    let rows = state
        .store
        .usage(
            scope,
            account_id,
            now - SignedDuration::from_hours(CHART_HOURS),
            now,
            UsageOf::Dimensions,
            Granularity::Hour,
        )
        .await?;
    let mut dimensions: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    dimensions.dedup();
    dimensions.sort();
    dimensions.dedup();
    let charts = dimensions
        .iter()
        .map(|dimension| {
            let series: Vec<&UsageRow> = rows.iter().filter(|r| &r.name == dimension).collect();
            Chart {
                dimension: dimension.clone(),
                hours: series.len(),
                svg: hourly_chart(&series, now),
            }
        })
        .collect();
    let quarantine = state
        .store
        .quarantine(scope, Some(external_id), false, 50)
        .await?
        .into_iter()
        .map(|q| QuarantineRow {
            time: when(q.event_time),
            event_type: q.event_type,
            reason: q.reason,
            detail: q.detail,
            received_at: when(q.received_at),
        })
        .collect();
    Ok(AccountMetering {
        period,
        charts,
        quarantine,
    })
}

/// Hourly quantities as bars, with the even pace of the commitment (commitment ÷ hours
/// in the period) as a line when the dimension is committed. Coordinates are floating
/// point for drawing only; every figure shown as text comes from the exact decimals.
fn hourly_chart(series: &[&UsageRow], now: Timestamp) -> String {
    use plotters::prelude::*;
    let start = now - SignedDuration::from_hours(CHART_HOURS);
    let x = |t: Timestamp| (t.as_second() - start.as_second()) as f64 / 3600.0;
    let value = |text: &str| text.parse::<f64>().unwrap_or(0.0);
    let pace = series.iter().rev().find_map(|r| {
        let committed = value(r.committed.as_deref()?);
        let hours = purser_core::commercial::BillingPeriod::containing(r.start).hours();
        (hours > 0).then(|| committed / hours as f64)
    });
    let top = series
        .iter()
        .map(|r| value(&r.quantity))
        .chain(pace)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 200)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..CHART_HOURS as f64, 0f64..top)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(8)
                .x_label_formatter(&|h| {
                    (start + SignedDuration::from_secs((*h * 3600.0) as i64))
                        .strftime("%m-%d")
                        .to_string()
                })
                .y_labels(5)
                .draw()?;
            chart.draw_series(series.iter().map(|r| {
                let left = x(r.start);
                let over = r
                    .overage_quantity
                    .as_deref()
                    .is_some_and(|o| value(o) > 0.0);
                let colour = if over {
                    RGBColor(0xc2, 0x41, 0x0c)
                } else {
                    RGBColor(0x25, 0x63, 0xeb)
                };
                Rectangle::new(
                    [(left, 0.0), (left + 0.9, value(&r.quantity))],
                    colour.filled(),
                )
            }))?;
            if let Some(pace) = pace {
                chart.draw_series(LineSeries::new(
                    [(0.0, pace), (CHART_HOURS as f64, pace)],
                    ShapeStyle::from(&BLACK).stroke_width(1),
                ))?;
            }
            root.present()?;
            Ok(())
        })();
        if let Err(error) = drawn {
            tracing::warn!(%error, "a usage chart could not be drawn");
        }
    }
    svg
}

struct IngestRow {
    hour: String,
    batches: i64,
    events: i64,
    accepted: i64,
    duplicate: i64,
    quarantined: i64,
    rejected: i64,
}

struct HourRow {
    hour: String,
    detail: String,
    events: i64,
    late: i64,
}

struct LateRow {
    account_id: String,
    account_name: String,
    dimension: String,
    hour: String,
    quantity: String,
}

#[derive(Template)]
#[template(path = "metering.html")]
struct MeteringPage {
    chrome: Chrome,
    closed_through: String,
    ingest: Vec<IngestRow>,
    open: Vec<HourRow>,
    closed: Vec<HourRow>,
    late: Vec<LateRow>,
    quarantine: Vec<QuarantineListRow>,
    can_replay: bool,
}

struct QuarantineListRow {
    subject: String,
    event_type: String,
    time: String,
    reason: String,
    detail: String,
}

/// `/metering`: what arrived, which hours are open or closed, late adjustments and
/// the quarantine.
pub async fn page(State(state): State<AppState>, caller: PageCaller) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadMetering).await?;
    let scope = caller.scope(&state).await?;
    let now = Timestamp::now();
    let day_ago = now - SignedDuration::from_hours(24);
    let ingest = state
        .store
        .ingest_activity(day_ago)
        .await?
        .into_iter()
        .map(|h| IngestRow {
            hour: when(h.hour),
            batches: h.batches,
            events: h.events,
            accepted: h.accepted,
            duplicate: h.duplicate,
            quarantined: h.quarantined,
            rejected: h.rejected,
        })
        .collect();
    let open = state
        .store
        .open_hours(&state.settings.metering)
        .await?
        .into_iter()
        .map(|h| HourRow {
            hour: when(h.hour),
            detail: format!("closes {}", when(h.closes_at)),
            events: h.events,
            late: 0,
        })
        .collect();
    let mut closed: Vec<HourRow> = state
        .store
        .closed_hours(day_ago, now)
        .await?
        .into_iter()
        .map(|h| HourRow {
            hour: when(h.hour),
            detail: format!("{} accounts, closed {}", h.accounts, when(h.closed_at)),
            events: h.events,
            late: h.late,
        })
        .collect();
    closed.reverse();
    let late = state
        .store
        .late_adjustments(&scope, 50)
        .await?
        .into_iter()
        .map(|l| LateRow {
            account_id: l.account_id,
            account_name: l.account_name,
            dimension: l.dimension,
            hour: when(l.hour),
            quantity: l.quantity,
        })
        .collect();
    let quarantine = state
        .store
        .quarantine(&scope, None, false, 200)
        .await?
        .into_iter()
        .map(|q| QuarantineListRow {
            subject: q.subject,
            event_type: q.event_type,
            time: when(q.event_time),
            reason: q.reason,
            detail: q.detail,
        })
        .collect();
    Ok(render(&MeteringPage {
        chrome: Chrome::for_caller(&caller, "/metering"),
        closed_through: state
            .store
            .closed_through()
            .await?
            .map_or_else(|| "no hour yet".into(), when),
        ingest,
        open,
        closed,
        late,
        quarantine,
        can_replay: caller.principal.can(Permission::ManageMetering),
    }))
}
