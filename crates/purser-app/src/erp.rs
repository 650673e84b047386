//! The ERP export in the application: the monthly `erp.export` job, which keeps each
//! month's invoice lines once its last hour is closed, and `purser erp export`.

use std::io::Write;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use purser_core::AccountScope;
use purser_core::commercial::BillingPeriod;
use purser_core::invoice::FeeRates;
use purser_store::erp::ExportInfo;
use purser_store::{OpenMode, Store, StoreError};

use crate::jobs::Job;
use crate::{AppError, Config, open_store};

/// How many months back the job looks for one not kept yet (after a long outage).
const MONTHS_BACK: usize = 12;

/// The last month whose every hour is closed, given the last closed hour's start.
pub fn last_complete_month(closed_through: Timestamp) -> BillingPeriod {
    let month = BillingPeriod::containing(closed_through);
    if closed_through + SignedDuration::from_hours(1) >= month.end {
        month
    } else {
        BillingPeriod::containing(month.start - SignedDuration::from_hours(1))
    }
}

/// Keeps every complete month not kept yet that has closed hours, newest first, at
/// most [`MONTHS_BACK`] back. Returns what it kept.
pub async fn keep_due_exports(
    store: &Store,
    fees: &FeeRates,
) -> Result<Vec<ExportInfo>, StoreError> {
    let Some(closed_through) = store.closed_through().await? else {
        return Ok(Vec::new());
    };
    let rules = store.boundary_rules().await?;
    let actor = purser_core::audit::Actor::new("system:erp.export", None);
    let mut month = last_complete_month(closed_through);
    let mut kept = Vec::new();
    for _ in 0..MONTHS_BACK {
        if store.erp_export_info(&month.month_label()).await?.is_some() {
            break;
        }
        // A month before Purser closed any hour has nothing to export.
        if store.closed_hours(month.start, month.end).await?.is_empty() {
            break;
        }
        kept.push(store.keep_erp_export(&actor, &rules, month, fees).await?);
        month = BillingPeriod::containing(month.start - SignedDuration::from_hours(1));
    }
    Ok(kept)
}

/// The `erp.export` job.
pub fn export_job(period_seconds: i64, fees: FeeRates) -> Job {
    let fees = Arc::new(fees);
    Job {
        name: "erp.export",
        period_seconds,
        run: Arc::new(move |store: Store| {
            let fees = fees.clone();
            Box::pin(async move {
                let kept = keep_due_exports(&store, &fees)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if kept.is_empty() {
                    "no month was due".into()
                } else {
                    kept.iter()
                        .map(|k| {
                            format!("kept {}: {} lines, {}", k.month, k.n_lines, k.lines_digest)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
        }),
    }
}

/// `purser erp export`: a month's lines from the database (the kept export when there
/// is one), as CSV, JSON lines or JSON, to standard output or a file.
pub async fn export(
    config: &Config,
    month: &str,
    account: Option<&str>,
    format: &str,
    output: Option<&std::path::Path>,
) -> Result<(), AppError> {
    let period = BillingPeriod::parse_month(month)
        .map_err(|e| AppError::Invalid(format!("--month: {e}")))?;
    let format = purser_http::api::erp::Format::parse(Some(format))
        .map_err(|e| AppError::Invalid(format!("--format: {e}")))?;
    let fees = config.erp.fee_rates()?;
    let store = open_store(config, OpenMode::ReadOnly).await?;
    let scope = AccountScope::system("erp.export", &store.boundary_rules().await?);
    let lines = store.month_lines(&scope, period, account, &fees).await?;
    let text = match format {
        purser_http::api::erp::Format::Csv => purser_http::api::erp::lines_csv(&lines.lines)
            .map_err(|e| AppError::Invalid(format!("cannot write CSV: {e}")))?,
        purser_http::api::erp::Format::JsonLines => {
            purser_http::api::erp::lines_jsonl(&lines.lines)
        }
        purser_http::api::erp::Format::Json => {
            let value = serde_json::json!({
                "month": period.month_label(),
                "kept": lines.kept,
                "lines": lines.lines,
                "totals": purser_core::invoice::account_totals(&lines.lines),
            });
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
    };
    match output {
        Some(path) => std::fs::write(path, text)?,
        None => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
    }
    // Whether these are the kept lines, on standard error so it never mixes with them.
    match &lines.kept {
        Some(kept) => eprintln!(
            "{}: the kept export ({} lines in all, SHA-256 {})",
            kept.month, kept.n_lines, kept.lines_digest
        ),
        None => eprintln!(
            "{}: not kept yet; computed now from the hours closed so far",
            period.month_label()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(value: &str) -> Timestamp {
        value.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_month_is_complete_once_its_last_hour_is_closed() {
        let november = BillingPeriod::parse_month("2026-11").ok();
        assert_eq!(
            Some(last_complete_month(ts("2026-11-30T23:00:00Z"))),
            november
        );
        assert_eq!(
            Some(last_complete_month(ts("2026-12-01T00:00:00Z"))),
            november
        );
        assert_eq!(
            Some(last_complete_month(ts("2026-11-30T22:00:00Z"))),
            BillingPeriod::parse_month("2026-10").ok()
        );
    }
}
