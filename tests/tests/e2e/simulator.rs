//! `confide-sim` against a real DS on PostgreSQL: a small run delivers every
//! acknowledged message to every member once and says so, and a run against
//! a DS that withholds messages says what was lost.

use confide_client::TlsOptions;
use confide_client::sim::{self, GroupSpec, Report, Scenario, Target};
use confide_proto::v1;
use confide_tests::{HostileDs, spawn_app_with};

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
