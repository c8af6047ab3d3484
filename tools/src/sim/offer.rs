//! While messages flow: the open-loop Poisson process offering messages to
//! the senders, the churn and faults due alongside, the DS restarts; then
//! the drain, waiting for what was acknowledged to arrive everywhere.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::churn::Churner;
use super::directory::{Directory, Order, Progress};
use super::local_ds::LocalDs;
use super::setup::Plan;
use super::{Scenario, SimError, draw};

/// The drain ends early once nothing has arrived for this long.
const QUIET_FOR: Duration = Duration::from_secs(5);

/// Orders to each full member, by client index.
pub type Orders = HashMap<usize, mpsc::UnboundedSender<Order>>;

/// What the offering did.
pub struct Offered {
    pub messages: u64,
    /// When the first message was offered, and for how long they were.
    pub start: Instant,
    pub offered_for: Duration,
    pub ds_restarts: u32,
}

/// Offers messages (an open-loop Poisson process over the groups) and,
/// alongside, churn and faults (Poisson processes of their own), for the
/// scenario's duration; then drops the orders, so full members only read.
pub async fn offer(
    (scenario, plan): (&Scenario, &Plan),
    directory: &Directory,
    progress: &Progress,
    local: Option<Arc<tokio::sync::Mutex<LocalDs>>>,
    orders: Orders,
    bar: &ProgressBar,
) -> Result<Offered, SimError> {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let mut numbers: HashMap<usize, u64> = HashMap::new();
    let duration = scenario.duration();
    let start = Instant::now();
    let ds_restarts = schedule_ds_restarts(local, scenario.ds_restarts, duration, start);
    let mut churn = Churner::new(scenario, plan, &mut rng);
    let mut offered = 0u64;
    let mut at = Duration::ZERO;
    let mut last_draw = Instant::now();
    loop {
        let rate = scenario.rate_at(at).max(scenario.message_rate / 1000.0);
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        at += Duration::from_secs_f64(-uniform.ln() / rate);
        // Churn and faults due before this message go first.
        while let Some((when, orders_due)) =
            churn.next_before(at.min(duration), directory, &mut rng)
        {
            let due = wait_until(start + when).await;
            for (client, order) in orders_due {
                if send(&orders, client, order.at(due)) {
                    progress.pending_changes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if at >= duration {
            break;
        }
        let due = wait_until(start + at).await;
        let senders = &plan.senders;
        let group = rng.random_range(0..senders.len());
        let sender = senders[group][rng.random_range(0..senders[group].len())];
        let number = numbers.entry(sender).or_default();
        *number += 1;
        let order = Order::Send {
            group: group as u32,
            number: *number,
            due,
        };
        if send(&orders, sender, order) {
            offered += 1;
        }
        if last_draw.elapsed() > Duration::from_millis(200) {
            last_draw = Instant::now();
            draw(bar, progress, offered, "offering messages");
        }
    }
    let offered_for = start.elapsed().min(duration);
    drop(orders);
    let ds_restarts = ds_restarts
        .await
        .map_err(|e| SimError::Ds(e.to_string()))??;
    Ok(Offered {
        messages: offered,
        start,
        offered_for,
        ds_restarts,
    })
}

/// Sleeps until `due` unless it is (about) now; returns `due`.
async fn wait_until(due: Instant) -> Instant {
    if due > Instant::now() + Duration::from_millis(1) {
        tokio::time::sleep_until(due.into()).await;
    }
    due
}

/// Gives a full member an order; false if it has stopped.
fn send(orders: &Orders, client: usize, order: Order) -> bool {
    orders[&client].send(order).is_ok()
}

/// Restarts the local DS `count` times, evenly spread over `duration` from
/// `start`; resolves to the number of restarts made.
fn schedule_ds_restarts(
    local: Option<Arc<tokio::sync::Mutex<LocalDs>>>,
    count: u32,
    duration: Duration,
    start: Instant,
) -> tokio::task::JoinHandle<Result<u32, SimError>> {
    tokio::spawn(async move {
        let Some(local) = local else { return Ok(0) };
        for k in 1..=count {
            let at = start + duration.mul_f64(f64::from(k) / f64::from(count + 1));
            tokio::time::sleep_until(at.into()).await;
            tracing::info!(restart = k, "restarting the DS");
            local.lock().await.restart().await?;
        }
        Ok(count)
    })
}

/// Waits until every send and change is done and every acknowledged
/// message reached every member, or nothing has arrived for a while;
/// returns how the wait ended.
pub async fn drain(
    scenario: &Scenario,
    progress: &Progress,
    offered: u64,
    bar: &ProgressBar,
) -> String {
    let deadline = Instant::now() + Duration::from_secs_f64(scenario.drain_secs);
    let mut last_seen = (progress.deliveries.load(Ordering::Relaxed), Instant::now());
    loop {
        let deliveries = progress.deliveries.load(Ordering::Relaxed);
        let answered = progress.acknowledged.load(Ordering::Relaxed)
            + progress.failed.load(Ordering::Relaxed)
            >= offered
            && progress.pending_changes.load(Ordering::Relaxed) == 0;
        if deliveries != last_seen.0 {
            last_seen = (deliveries, Instant::now());
        }
        let arrived = deliveries >= progress.owed.load(Ordering::Relaxed);
        let quiet = last_seen.1.elapsed() > QUIET_FOR;
        if answered && arrived {
            return "every acknowledged message arrived".to_string();
        }
        if answered && quiet {
            return format!("nothing arrived for {QUIET_FOR:?}");
        }
        if Instant::now() > deadline {
            return format!(
                "the drain time ({:.0} s) ran out with {} still arriving",
                scenario.drain_secs,
                match answered {
                    true => "deliveries",
                    false => "sends and deliveries",
                }
            );
        }
        draw(bar, progress, offered, "waiting for deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
