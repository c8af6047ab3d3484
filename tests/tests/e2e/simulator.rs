//! `confide-sim` against a real DS on PostgreSQL: a small run delivers every
//! acknowledged message to every member once and says so, and a run against
//! a DS that withholds messages says what was lost.

use confide_client::TlsOptions;
use confide_proto::v1;
use confide_tests::{HostileDs, spawn_app_with};
use confide_tools::sim::{self, GroupSpec, Report, Scenario, Target};

fn small_scenario() -> Scenario {
    Scenario {
        users: 12,
        groups: vec![GroupSpec { count: 3, size: 4 }],
        message_rate: 60.0,
        duration_secs: 1.5,
        senders_per_group: 1,
        verifiers_per_group: 1,
        connections: 2,
        drain_secs: 10.0,
        ..Scenario::default()
    }
}

async fn simulate(endpoint: &str, scenario: Scenario) -> Report {
    let target = Target::Remote {
        endpoint: endpoint.to_string(),
        tls: TlsOptions::default(),
        registration_token: String::new(),
    };
    sim::run(scenario, target, false)
        .await
        .unwrap_or_else(|e| panic!("the simulation could not run: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_delivers_every_acknowledged_message_to_every_member_once() {
    let app = spawn_app_with(|settings| settings.lift_limits()).await;
    let report = simulate(&app.endpoint, small_scenario()).await;

    assert!(report.is_clean(), "{report}");
    assert!(report.messages_acknowledged > 0, "{report}");
    assert_eq!(report.messages_acknowledged, report.messages_offered);
    // Each message reaches the 3 other members of its group of 4.
    assert_eq!(report.expected_deliveries, 3 * report.messages_acknowledged);
    assert_eq!(report.deliveries, report.expected_deliveries);
    assert_eq!(report.end_to_end_latency.count, report.deliveries);
    assert_eq!(report.setup.memberships, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_reports_the_messages_a_ds_withholds() {
    let app = spawn_app_with(|settings| settings.lift_limits()).await;
    let hostile = HostileDs::in_front_of(&app).await;
    hostile.rewrite_entries(|_, entries| {
        entries
            .into_iter()
            .filter(|e| !(e.kind == v1::EntryKind::Application as i32 && e.seq % 5 == 0))
            .collect()
    });
    let report = simulate(
        &hostile.endpoint,
        Scenario {
            drain_secs: 2.0,
            ..small_scenario()
        },
    )
    .await;

    assert!(!report.is_clean(), "{report}");
    assert!(report.lost_acknowledged > 0, "{report}");
    assert!(report.gaps > 0, "{report}");
    assert!(report.deliveries < report.expected_deliveries, "{report}");
}

/// Churn and every fault at once against the simulator's own DS on
/// PostgreSQL: members added, removed and refreshing keys, commit storms,
/// answers thrown away, members and the DS restarted. Nothing may be lost,
/// duplicated, reordered or forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_and_faults_lose_nothing_and_fork_no_group() {
    let scenario = Scenario {
        users: 12,
        groups: vec![GroupSpec { count: 3, size: 5 }],
        message_rate: 20.0,
        duration_secs: 5.0,
        senders_per_group: 1,
        verifiers_per_group: 1,
        connections: 2,
        drain_secs: 60.0,
        self_updates_per_minute: 60.0,
        adds_per_minute: 48.0,
        removes_per_minute: 48.0,
        commit_storms_per_minute: 24.0,
        dropped_responses: 0.2,
        client_restarts_per_minute: 36.0,
        ds_restarts: 1,
        seed: 7,
        ..Scenario::default()
    };
    let target = Target::Postgres {
        database_url: confide_ds::store::postgres::testing::admin_url(),
    };
    let report = sim::run(scenario, target, false)
        .await
        .unwrap_or_else(|e| panic!("the simulation could not run: {e}"));

    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.messages_acknowledged, report.messages_offered,
        "{report}"
    );
    assert_eq!(report.deliveries, report.expected_deliveries, "{report}");
    let churn = &report.churn;
    assert!(churn.commits > 0 && churn.conflicts > 0, "{report}");
    assert!(
        churn.clients_added > 0 && churn.clients_removed > 0,
        "{report}"
    );
    assert!(churn.dropped_responses > 0, "{report}");
    assert_eq!(churn.retry_mismatches, 0, "{report}");
    assert!(churn.client_restarts > 0, "{report}");
    assert_eq!(churn.ds_restarts, 1, "{report}");
    assert!(churn.commit_errors.is_empty(), "{report}");

    let dir = std::env::temp_dir().join(format!("confide-sim-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("latency.svg");
    sim::plot::latency_over_time(&report, &path).expect("drawing the chart");
    let svg = std::fs::read_to_string(&path).expect("the chart was written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(svg.starts_with("<svg") && svg.contains("p99"), "{svg}");
}

/// Full members rejoining their groups by external commit while messages
/// flow: every rejoin is counted, what is sent after it reaches the member,
/// and no group forks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_resync_by_external_commit_lose_nothing_sent_afterwards_and_fork_no_group() {
    let scenario = Scenario {
        users: 8,
        groups: vec![GroupSpec { count: 2, size: 4 }],
        message_rate: 20.0,
        duration_secs: 4.0,
        senders_per_group: 2,
        verifiers_per_group: 1,
        connections: 2,
        drain_secs: 30.0,
        resyncs_per_minute: 60.0,
        seed: 11,
        ..Scenario::default()
    };
    let report = sim::run(scenario, Target::InMemory, false)
        .await
        .unwrap_or_else(|e| panic!("the simulation could not run: {e}"));

    assert!(report.is_clean(), "{report}");
    assert_eq!(report.lost_acknowledged, 0, "{report}");
    assert_eq!(report.forks, 0, "{report}");
    assert_eq!(report.deliveries, report.expected_deliveries, "{report}");
    assert!(report.churn.resyncs > 0, "{report}");
    assert!(report.churn.commit_errors.is_empty(), "{report}");
}

#[tokio::test]
async fn restarting_a_ds_the_simulator_does_not_own_durably_is_refused_before_it_starts() {
    let refused = sim::run(
        Scenario {
            ds_restarts: 1,
            ..small_scenario()
        },
        Target::InMemory,
        false,
    )
    .await;
    let Err(sim::SimError::Scenario(reason)) = refused else {
        panic!("a DS restart on the in-memory store was accepted");
    };
    assert!(reason.to_string().contains("ds_restarts needs"), "{reason}");
}
