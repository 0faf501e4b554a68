//! `[account_query]`: MSC4243's design knobs (`docs/scenarios.md`, open questions B1–B5, B10,
//! B11). Every value is checked here; the defaults are [`AccountQuerySpec::default`].

use toml::Spanned;

use super::super::duration::DurationUs;
use super::super::error::{Problem, Res};
use super::super::model::{AccountQuerySpec, Categories, ClientView};
use super::super::raw::RawAccountQuery;
use super::positive_or;

/// MSC4243 §4: at most 2048 keys per request.
const MAX_BATCH: i64 = 2048;
/// MSC4243 §7: erasures are polled at least every 3 days.
const MAX_ERASURE_POLL: DurationUs = DurationUs(3 * 24 * 3_600_000_000);
/// Longest retry schedule accepted.
const MAX_SCHEDULE: usize = 32;

pub(super) fn resolve(raw: Option<&RawAccountQuery>) -> Res<AccountQuerySpec> {
    let mut spec = AccountQuerySpec::default();
    let Some(raw) = raw else { return Ok(spec) };
    if let Some(v) = knob(&raw.unknown_encoding) {
        spec.unknown_encoding = v;
    }
    if let Some(v) = knob(&raw.categories) {
        spec.categories = v;
    }
    if let Some(v) = knob(&raw.client_view) {
        spec.client_view = v;
    }
    if let Some(v) = knob(&raw.on_verify) {
        spec.on_verify = v;
    }
    if let (Some(view), Categories::TwoState) = (&raw.client_view, spec.categories) {
        if *view.get_ref() == ClientView::UnderscorePrefix {
            return Err(Problem::at(
                view.span(),
                "client_view = \"underscore_prefix\" shows the seed's third category (unknown) and needs \
                 categories = \"three_state\"",
            ));
        }
    }
    if let Some(list) = &raw.retry_anomaly {
        spec.retry_anomaly_us = schedule(list, "retry_anomaly", false)?;
    }
    if let Some(list) = &raw.retry_negative {
        spec.retry_negative_us = schedule(list, "retry_negative", true)?;
    }
    if let Some(n) = &raw.settle_omitted_after {
        let v = *n.get_ref();
        if !(1..=1000).contains(&v) {
            return Err(Problem::at(n.span(), format!("settle_omitted_after must be between 1 and 1000; got {v}")));
        }
        spec.settle_omitted_after = Some(v as u32);
    }
    spec.timeout_us = positive_or(&raw.timeout, DurationUs(spec.timeout_us), "account_query.timeout")?;
    if let Some(n) = &raw.batch_size {
        let v = *n.get_ref();
        if !(1..=MAX_BATCH).contains(&v) {
            return Err(Problem::at(
                n.span(),
                format!("batch_size must be between 1 and {MAX_BATCH} (MSC4243 §4); got {v}"),
            ));
        }
        spec.batch_size = v as usize;
    }
    spec.erasure_poll_us =
        positive_or(&raw.erasure_poll, DurationUs(spec.erasure_poll_us), "account_query.erasure_poll")?;
    if let Some(v) = raw.erasure_poll.as_ref().filter(|v| v.get_ref().0 > MAX_ERASURE_POLL.0) {
        return Err(Problem::at(
            v.span(),
            format!("erasure_poll must be at most {MAX_ERASURE_POLL} (MSC4243 §7); got {}", v.get_ref()),
        ));
    }
    if let Some(n) = &raw.erasure_limit {
        let v = *n.get_ref();
        if !(1..=MAX_BATCH).contains(&v) {
            return Err(Problem::at(n.span(), format!("erasure_limit must be between 1 and {MAX_BATCH}; got {v}")));
        }
        spec.erasure_limit = v as u32;
    }
    spec.domain_backoff_us =
        positive_or(&raw.domain_backoff, DurationUs(spec.domain_backoff_us), "account_query.domain_backoff")?;
    spec.domain_backoff_max_us = positive_or(
        &raw.domain_backoff_max,
        DurationUs(spec.domain_backoff_max_us),
        "account_query.domain_backoff_max",
    )?;
    if spec.domain_backoff_max_us < spec.domain_backoff_us {
        let span = raw.domain_backoff_max.as_ref().or(raw.domain_backoff.as_ref()).map(|v| v.span()).unwrap_or(0..0);
        return Err(Problem::at(span, "domain_backoff_max must not be below domain_backoff"));
    }
    Ok(spec)
}

fn knob<T: Copy>(value: &Option<Spanned<T>>) -> Option<T> {
    value.as_ref().map(|v| *v.get_ref())
}

fn schedule(list: &Spanned<Vec<Spanned<DurationUs>>>, what: &str, may_be_empty: bool) -> Res<Vec<u64>> {
    let items = list.get_ref();
    if items.is_empty() && !may_be_empty {
        return Err(Problem::at(list.span(), format!("{what} needs at least one delay")));
    }
    if items.len() > MAX_SCHEDULE {
        return Err(Problem::at(list.span(), format!("{what} has at most {MAX_SCHEDULE} delays")));
    }
    items
        .iter()
        .map(|d| match d.get_ref().0 {
            0 => Err(Problem::at(d.span(), format!("every delay of {what} must be greater than 0"))),
            us => Ok(us),
        })
        .collect()
}
