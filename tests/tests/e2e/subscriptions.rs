//! The core of `confide-subscriptions` against a real DS on PostgreSQL: a
//! few hundred live streams sharing a few HTTP/2 connections all stay open,
//! and a message to the sample group reaches every sample member's stream.

use std::time::Duration;

use confide_tests::{WAIT, spawn_app_with};
use confide_tools::subscriptions::{self, NoProbe, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_streams_on_three_connections_are_all_live() {
    // Every client registers from 127.0.0.1: lift the per-address limit.
    let app =
        spawn_app_with(|settings| settings.limits.unauthenticated_per_minute = u32::MAX).await;
    let options = Options {
        clients: 300,
        connections: 3,
        sample: 12,
        checkpoints: vec![150],
        parallelism: 32,
        settle: Duration::ZERO,
        delivery_timeout: WAIT,
    };
    let outcome = subscriptions::run(&app.endpoint, &options, &NoProbe)
        .await
        .unwrap_or_else(|e| panic!("the run failed: {e}"));

    assert!(outcome.is_live(), "{outcome}");
    assert_eq!(outcome.streams_open, 300, "{outcome}");
    assert_eq!(outcome.sample_received, 11, "{outcome}");
    let opened: Vec<u64> = outcome.curve.iter().map(|p| p.subscriptions).collect();
    assert_eq!(opened, vec![150, 300]);
}
