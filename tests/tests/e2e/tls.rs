//! TLS on the gRPC port: a client that verifies the server converses, one
//! that cannot verify it (or speaks plaintext) gets nowhere; with client
//! certificates required, only a client presenting one is served; the health
//! port answers in plaintext beside it.

use confide_client::{Api, TlsOptions};
use confide_ds::config::TlsSettings;
use confide_proto::v1;
use confide_tests::{TestApp, spawn_app_with};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tempfile::TempDir;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A private CA and the PEM files a test DS is configured with.
struct Pki {
    dir: TempDir,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let ca_pem = params.self_signed(&key).expect("the CA certificate").pem();
        Self {
            dir: TempDir::new().expect("a temporary directory"),
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `name` signed by the CA: (certificate, key) PEM.
    fn leaf(&self, name: &str) -> (String, String) {
        let params = CertificateParams::new(vec![name.to_string()]).expect("leaf parameters");
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing the leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, file: &str, pem: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, pem).expect("writing a PEM file");
        path
    }

    /// TLS settings for a DS reached as `localhost`; with `client_ca`, client
    /// certificates signed by this CA are required.
    fn server_settings(&self, client_ca: bool) -> TlsSettings {
        let (cert, key) = self.leaf("localhost");
        TlsSettings {
            cert: self.write("server.pem", &cert),
            key: self.write("server.key", &key),
            client_ca: client_ca.then(|| self.write("ca.pem", &self.ca_pem)),
        }
    }

    fn trusting_client(&self) -> TlsOptions {
        TlsOptions {
            ca_certificate: Some(self.ca_pem.clone().into_bytes()),
            ..TlsOptions::default()
        }
    }
}

async fn tls_app(pki: &Pki, client_ca: bool) -> TestApp {
    let tls = pki.server_settings(client_ca);
    let mut app = spawn_app_with(|s| {
        s.tls = Some(tls);
        s.plaintext = false;
    })
    .await;
    app.client_tls = pki.trusting_client();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_verifies_the_server_converses_over_tls() {
    let pki = Pki::new();
    let app = tls_app(&pki, false).await;
    assert!(app.endpoint.starts_with("https://"));
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"over tls").await.expect("sending");
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_verify_the_server_or_speaks_plaintext_gets_nowhere() {
    let pki = Pki::new();
    let app = tls_app(&pki, false).await;

    // Only the web PKI roots: the private CA's certificate is not trusted.
    let untrusting = Api::connect(&app.endpoint).await;
    assert!(untrusting.is_err(), "a client trusting only the web PKI");

    // Another CA: a certificate for the right name, from the wrong issuer.
    let other = Pki::new();
    let wrong_ca = Api::connect_with(&app.endpoint, &other.trusting_client()).await;
    assert!(wrong_ca.is_err(), "a client trusting another CA");

    // Plaintext to the TLS port: nothing is served.
    let plaintext = app
        .endpoint
        .replace("https://localhost", "http://127.0.0.1");
    let refused = match Api::connect(&plaintext).await {
        Err(_) => true,
        Ok(api) => api
            .auth()
            .create_challenge(v1::CreateChallengeRequest {
                client: Some(v1::ClientId {
                    user: "alice".into(),
                    device: "phone".into(),
                }),
            })
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext call to the TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_only_a_client_presenting_one_is_served() {
    let pki = Pki::new();
    let mut app = tls_app(&pki, true).await;

    let anonymous = match Api::connect_with(&app.endpoint, &pki.trusting_client()).await {
        Err(_) => true,
        Ok(api) => api
            .key_packages()
            .count_key_packages(v1::CountKeyPackagesRequest {})
            .await
            .is_err(),
    };
    assert!(anonymous, "a client without a certificate is not served");

    let (cert, key) = pki.leaf("alice-laptop");
    app.client_tls.client_identity = Some((cert.into_bytes(), key.into_bytes()));
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"mutual tls").await.expect("sending");
    assert_eq!(bob.expect_messages(&group, 1).await[0].body, b"mutual tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_answers_in_plaintext_beside_the_tls_port() {
    let pki = Pki::new();
    let app = tls_app(&pki, false).await;
    let channel = tonic::transport::Endpoint::from_shared(app.health_endpoint.clone())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connecting to the health port");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "confide.v1.GroupService".into(),
        })
        .await
        .expect("a health check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}
