//! The closed-loop load generator both servers are measured with: each of K
//! callers issues its next unary call as soon as the previous one completed,
//! over a few shared HTTP/2 connections, so the same generator offers the
//! echo server and the delivery service as much load as each can take.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::latency::{Latency, histogram, micros};

/// One call in flight: `Ok(Some(seq))` for an acknowledged append (kept for
/// the check against the log), `Ok(None)` for any other success.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Option<u64>, tonic::Status>> + Send>>;

/// A caller: makes its next call, or `None` once it has nothing left to send
/// (its pre-encrypted messages are used up).
pub trait Caller: FnMut() -> Option<CallFuture> + Send + 'static {}
impl<T: FnMut() -> Option<CallFuture> + Send + 'static> Caller for T {}

/// When calls count.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Calls completed before this long after the start are not counted.
    pub warm_up: Duration,
    /// Counting stops after this long, and callers start no more calls;
    /// `None`: callers run until they have nothing left.
    pub duration: Option<Duration>,
}

/// What a load run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadFigures {
    pub concurrency: usize,
    /// Seconds counted (the window after the warm-up).
    pub window_secs: f64,
    /// Successful calls completed inside the window.
    pub calls: u64,
    pub calls_per_sec: f64,
    /// Successful calls overall, warm-up and stragglers included.
    pub calls_total: u64,
    /// Failed calls by gRPC status code (must be empty).
    pub errors: BTreeMap<String, u64>,
    /// Callers that ran out of calls before the window ended; the rate then
    /// understates the server (must be 0 in a timed run).
    pub exhausted_callers: usize,
    pub latency: Latency,
}

/// A load run's figures, and every acknowledged sequence number per caller
/// (in each caller's order).
pub struct LoadRun {
    pub figures: LoadFigures,
    pub acknowledged: Vec<Vec<u64>>,
}

struct CallerResult {
    in_window: u64,
    total: u64,
    latency: Histogram<u64>,
    acknowledged: Vec<u64>,
    errors: BTreeMap<String, u64>,
    exhausted: bool,
}

/// Runs every caller as its own task until the window closes (or, without a
/// duration, until each has nothing left) and puts their figures together.
/// A call counts when it *completes* inside the window.
pub async fn run<C: Caller>(callers: Vec<C>, window: Window) -> LoadRun {
    let concurrency = callers.len();
    let start = Instant::now();
    let counted_from = start + window.warm_up;
    let until = window.duration.map(|d| counted_from + d);
    let mut tasks = JoinSet::new();
    for (index, mut next) in callers.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut result = CallerResult {
                in_window: 0,
                total: 0,
                latency: histogram(),
                acknowledged: Vec::new(),
                errors: BTreeMap::new(),
                exhausted: false,
            };
            loop {
                let began = Instant::now();
                if until.is_some_and(|until| began >= until) {
                    break;
                }
                let Some(call) = next() else {
                    result.exhausted = until.is_some();
                    break;
                };
                let outcome = call.await;
                let done = Instant::now();
                match outcome {
                    Ok(seq) => {
                        result.total += 1;
                        result.acknowledged.extend(seq);
                        if done >= counted_from && until.is_none_or(|until| done <= until) {
                            result.in_window += 1;
                            let _ = result.latency.record(micros(done - began));
                        }
                    }
                    Err(status) => {
                        *result
                            .errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                    }
                }
            }
            (index, result)
        });
    }
    let mut latency = histogram();
    let mut figures = LoadFigures {
        concurrency,
        ..LoadFigures::default()
    };
    let mut acknowledged = vec![Vec::new(); concurrency];
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.expect("a load caller panicked");
        figures.calls += result.in_window;
        figures.calls_total += result.total;
        figures.exhausted_callers += usize::from(result.exhausted);
        for (code, count) in result.errors {
            *figures.errors.entry(code).or_default() += count;
        }
        latency.add(&result.latency).expect("same bounds");
        acknowledged[index] = result.acknowledged;
    }
    let window_end = until.unwrap_or_else(Instant::now);
    figures.window_secs = window_end
        .saturating_duration_since(counted_from)
        .as_secs_f64();
    if figures.window_secs > 0.0 {
        figures.calls_per_sec = figures.calls as f64 / figures.window_secs;
    }
    figures.latency = Latency::of(&latency);
    LoadRun {
        figures,
        acknowledged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_run_until_they_have_nothing_left_and_every_ack_is_kept() {
        let callers: Vec<_> = (0..3u64)
            .map(|caller| {
                let mut left = 5u64;
                move || -> Option<CallFuture> {
                    if left == 0 {
                        return None;
                    }
                    left -= 1;
                    let seq = caller * 100 + left;
                    Some(Box::pin(async move {
                        if seq == 201 {
                            Err(tonic::Status::unavailable("down"))
                        } else {
                            Ok(Some(seq))
                        }
                    }))
                }
            })
            .collect();
        let run = run(
            callers,
            Window {
                warm_up: Duration::ZERO,
                duration: None,
            },
        )
        .await;
        assert_eq!(run.figures.calls_total, 14);
        assert_eq!(run.figures.calls, 14);
        assert_eq!(run.figures.errors.get("Unavailable"), Some(&1));
        assert_eq!(run.figures.exhausted_callers, 0);
        assert_eq!(run.acknowledged[0], vec![4, 3, 2, 1, 0]);
        assert_eq!(run.acknowledged[2], vec![204, 203, 202, 200]);
    }

    #[tokio::test]
    async fn a_caller_that_runs_dry_in_a_timed_run_is_reported() {
        let mut left = 1;
        let caller = move || -> Option<CallFuture> {
            if left == 0 {
                return None;
            }
            left -= 1;
            Some(Box::pin(async { Ok(None) }))
        };
        let run = run(
            vec![caller],
            Window {
                warm_up: Duration::ZERO,
                duration: Some(Duration::from_millis(50)),
            },
        )
        .await;
        assert_eq!(run.figures.exhausted_callers, 1);
        assert_eq!(run.figures.calls_total, 1);
    }
}
