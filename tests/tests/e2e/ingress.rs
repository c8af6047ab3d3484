//! `confide-ingress` on real PostgreSQL: a short run stores every message
//! the DS acknowledged exactly once, and every figure measured something.

use confide_ds::store::postgres::testing::DEFAULT_DATABASE_URL;
use confide_tools::ingress::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_ingress_run_stores_each_acknowledged_message_once_and_measures_both_servers() {
    let options = Options {
        database_url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned()),
        concurrency: 4,
        connections: 2,
        groups: 2,
        warm_up_secs: 0.1,
        duration_secs: 0.6,
        storage_group_sizes: vec![2, 3],
        storage_messages: 40,
        // Far more than a DS in a test build accepts in 0.7 s with 4
        // callers, and quick to encrypt.
        max_messages: 4000,
        ..Options::default()
    };
    let report = ingress::run(options, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("the benchmark could not run: {e}"));

    assert!(report.is_clean(), "{report}");
    assert!(
        report.echo.calls > 0 && report.echo.calls_per_sec > 0.0,
        "{report}"
    );
    assert!(report.postgres_insert.load.calls > 0, "{report}");
    let ingress = &report.ingress;
    assert!(ingress.load.calls > 0, "{report}");
    assert_eq!(ingress.check.stored, ingress.check.acknowledged, "{report}");
    assert_eq!(
        ingress.check.acknowledged, ingress.load.calls_total,
        "{report}"
    );
    assert!(ingress.wire_bytes_per_message > 246.0, "{report}");
    assert!(report.ingress_to_echo_ratio > 0.0, "{report}");
    let sizes: Vec<usize> = report.storage.iter().map(|s| s.group_size).collect();
    assert_eq!(sizes, [2, 3]);
    for storage in &report.storage {
        assert_eq!(storage.messages, 40, "{report}");
        assert_eq!(storage.check.acknowledged, 40, "{report}");
        assert!(storage.stored_bytes_per_message > 0.0, "{report}");
        // Each row holds the whole MLS message.
        assert!(
            storage.row_bytes > storage.wire_bytes_per_message,
            "{report}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_with_how_to_start_it() {
    let options = Options {
        database_url: "postgres://postgres:secret@127.0.0.1:1/postgres".into(),
        ..Options::default()
    };
    let error = ingress::run(options, &|_| {})
        .await
        .expect_err("nothing listens on port 1")
        .to_string();
    assert!(error.contains("pg_ctlcluster"), "{error}");
    assert!(!error.contains("secret"), "{error}");
}
