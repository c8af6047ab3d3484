//! Users and their devices: registration under the user's identity key (one
//! transaction, so two first devices racing for a new user make one
//! identity), the devices and revocations `ListDevices` serves.

use deadpool_postgres::{GenericClient, Pool};

use super::{client_id, clients};
use crate::domain::ClientId;
use crate::store::{ClientRecord, NewDevice, Registration, StoreResult, UserDevices};

/// Registers the device, deciding under the user's row lock.
pub(super) async fn register(pool: &Pool, device: &NewDevice) -> StoreResult<Registration> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let id = &device.client.id;
    // An insert that loses to a concurrent one waits for it and then sees
    // its row: the first device of a user makes the identity. Every refusal
    // below rolls back, so a refused device creates no user.
    let new_user = insert_user(&tx, id.user(), &device.identity_key).await?;
    let identity_key = lock_user(&tx, id.user()).await?;
    let existing = clients::registered_key_for_update(&tx, id).await?;
    let outcome = decide(&tx, device, new_user, &identity_key, existing).await?;
    if matches!(
        outcome,
        Registration::Created | Registration::AlreadyRegistered | Registration::Rekeyed
    ) {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// What registering `device` does, given the user's identity key (made by
/// this registration if `new_user`) and the client's row if it has one.
async fn decide(
    db: &impl GenericClient,
    device: &NewDevice,
    new_user: bool,
    identity_key: &[u8],
    existing: Option<(Vec<u8>, bool)>,
) -> StoreResult<Registration> {
    let record = &device.client;
    match existing {
        Some((_, true)) => Ok(Registration::Removed),
        _ if identity_key != device.identity_key => Ok(Registration::OtherIdentity),
        // A client from before certificates may not change its key while
        // naming its user's identity: nothing certified the old one.
        Some((key, false)) if new_user && key != record.signature_key => {
            Ok(Registration::KeyMismatch)
        }
        Some((key, false)) if key == record.signature_key => {
            clients::set_certificate(db, record).await?;
            Ok(Registration::AlreadyRegistered)
        }
        Some(_) => {
            clients::rekey(db, record).await?;
            Ok(Registration::Rekeyed)
        }
        // Devices from before certificates share no identity with this one.
        None if new_user && !clients::devices(db, record.id.user()).await?.is_empty() => {
            Ok(Registration::OtherIdentity)
        }
        None => {
            clients::insert(db, record).await?;
            Ok(Registration::Created)
        }
    }
}

/// True if the user was new.
async fn insert_user(
    db: &impl GenericClient,
    user: &str,
    identity_key: &[u8],
) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO users (user_name, identity_key) VALUES ($1, $2)
             ON CONFLICT (user_name) DO NOTHING",
        )
        .await?;
    Ok(db.execute(&stmt, &[&user, &identity_key]).await? == 1)
}

/// The user's identity key, its row locked until the transaction ends.
pub(super) async fn lock_user(db: &impl GenericClient, user: &str) -> StoreResult<Vec<u8>> {
    let stmt = db
        .prepare_cached("SELECT identity_key FROM users WHERE user_name = $1 FOR UPDATE")
        .await?;
    Ok(db.query_one(&stmt, &[&user]).await?.try_get(0)?)
}

pub(super) async fn identity_key(
    db: &impl GenericClient,
    user: &str,
) -> StoreResult<Option<Vec<u8>>> {
    let stmt = db
        .prepare_cached("SELECT identity_key FROM users WHERE user_name = $1")
        .await?;
    let row = db.query_opt(&stmt, &[&user]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Keeps the revocation of a client, unless one was kept before.
pub(super) async fn put_revocation(
    db: &impl GenericClient,
    client: &ClientId,
    revocation: &[u8],
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO device_revocations (user_name, device_name, revocation)
             VALUES ($1, $2, $3)
             ON CONFLICT (user_name, device_name) DO NOTHING",
        )
        .await?;
    db.execute(&stmt, &[&client.user(), &client.device(), &revocation])
        .await?;
    Ok(())
}

pub(super) async fn user_devices(db: &impl GenericClient, user: &str) -> StoreResult<UserDevices> {
    let devices = db
        .prepare_cached(
            "SELECT device_name, signature_key, device_certificate FROM clients
             WHERE user_name = $1 AND removed_at IS NULL ORDER BY device_name",
        )
        .await?;
    let revocations = db
        .prepare_cached(
            "SELECT device_name, revocation FROM device_revocations
             WHERE user_name = $1 ORDER BY device_name",
        )
        .await?;
    let devices = db
        .query(&devices, &[&user])
        .await?
        .iter()
        .map(|row| {
            Ok(ClientRecord {
                id: client_id(user.to_owned(), row.try_get(0)?)?,
                signature_key: row.try_get(1)?,
                certificate: row.try_get(2)?,
            })
        })
        .collect::<StoreResult<_>>()?;
    let revocations = db
        .query(&revocations, &[&user])
        .await?
        .iter()
        .map(|row| {
            Ok((
                client_id(user.to_owned(), row.try_get(0)?)?,
                row.try_get(1)?,
            ))
        })
        .collect::<StoreResult<_>>()?;
    Ok(UserDevices {
        identity_key: identity_key(db, user).await?,
        devices,
        revocations,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::fresh_database;
    use crate::domain::ClientId;
    use crate::store::{ClientRecord, NewDevice, Registration, Store};

    fn device(device: &str, key: &[u8], identity: &[u8]) -> NewDevice {
        NewDevice {
            client: ClientRecord {
                id: ClientId::new("alice", device).unwrap(),
                signature_key: key.to_vec(),
                certificate: Some([identity, key].concat()),
            },
            identity_key: identity.to_vec(),
        }
    }

    /// Clients registered before certificates (migration V6) have no user
    /// row: the first of them to register again with a certificate, with
    /// its own key, makes the user's identity; nobody else can.
    #[tokio::test]
    async fn a_user_from_before_certificates_gets_its_identity_from_one_of_its_own_devices() {
        let (store, _) = fresh_database().await;
        let conn = store.pool().get().await.unwrap();
        conn.batch_execute(
            "INSERT INTO clients (user_name, device_name, signature_key)
             VALUES ('alice', 'phone', 'key one'), ('alice', 'tablet', 'key two')",
        )
        .await
        .unwrap();
        let outcomes = [
            (
                device("evil", b"evil key", b"identity B"),
                Registration::OtherIdentity,
            ),
            (
                device("phone", b"key two", b"identity B"),
                Registration::KeyMismatch,
            ),
            (
                device("phone", b"key one", b"identity A"),
                Registration::AlreadyRegistered,
            ),
            (
                device("tablet", b"key two", b"identity B"),
                Registration::OtherIdentity,
            ),
            (
                device("tablet", b"key two", b"identity A"),
                Registration::AlreadyRegistered,
            ),
        ];
        for (registration, expected) in outcomes {
            assert_eq!(
                store.register_client(&registration).await.unwrap(),
                expected,
                "{:?}",
                registration.client.id
            );
            if expected == Registration::KeyMismatch {
                assert_eq!(store.identity_key("alice").await.unwrap(), None);
            }
        }
        assert_eq!(
            store.identity_key("alice").await.unwrap().as_deref(),
            Some(&b"identity A"[..])
        );
        let devices = store.user_devices("alice").await.unwrap().devices;
        assert!(
            devices.iter().all(|d| d.certificate.is_some()),
            "{devices:?}"
        );
        assert_eq!(devices.len(), 2);
    }
}
