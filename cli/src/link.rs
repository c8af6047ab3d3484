//! Linking a device from the command line: `confide link` on the new
//! device, `confide approve` on an existing one, and the device list and
//! revocation (`confide devices`, `confide remove-device`) run as one-shot
//! commands.

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::time::Duration;

use confide_client::display::safe;
use confide_client::{Client, ClientId, DeviceStatus, StateLocation};

use crate::args::Conn;
use crate::commands::open;
use crate::json::Printer;

/// How long `confide approve` waits for the new device to register and
/// publish key packages once it has its certificate.
const REGISTRATION_WAIT: Duration = Duration::from_secs(120);

/// `confide link`: makes this device's key, shows the code, the URI and the
/// authentication string, and waits until an existing device approves.
pub async fn link(
    conn: &Conn,
    user: String,
    device: String,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = conn.api().await?;
    let id = ClientId::new(user, device)?;
    let pending =
        Client::start_link(api, id.clone(), &StateLocation::File(conn.state.clone())).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "To link {id}, run on a device of {}:", id.user())?;
    writeln!(out, "  confide approve {}", pending.code())?;
    writeln!(out, "or: confide approve {}", pending.uri())?;
    writeln!(out, "authentication string: {}", pending.sas()?)?;
    writeln!(
        out,
        "It must show the same digits; waiting up to {}s for approval…",
        timeout.as_secs()
    )?;
    out.flush()?;
    drop(out);
    let client = pending.finish(token, timeout).await?;
    println!(
        "linked {} (certified by {}'s identity key); its groups are added by the approving device",
        client.id(),
        client.id().user()
    );
    Ok(())
}

/// `confide approve CODE|URI [--sas DIGITS]`: certifies the new device only
/// if the person confirms the authentication string, then adds it to every
/// group of this device.
pub async fn approve(conn: &Conn, code: &str, sas: Option<String>) -> anyhow::Result<()> {
    let mut client = open(conn).await?;
    let request = client.open_link(code).await?;
    println!(
        "{} asks to be linked, with key {}",
        request.client, request.fingerprint
    );
    println!("authentication string here: {}", request.sas());
    let entered = match sas {
        Some(sas) => sas,
        None => {
            print!("Type the 6 digits the new device shows: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    client.approve_link(&request, &entered).await?;
    println!(
        "certified {}; adding it to this device's groups…",
        request.client
    );
    for linked in client
        .add_linked_device(&request.client, REGISTRATION_WAIT)
        .await?
    {
        let group = hex::encode(&linked.group);
        match linked.outcome {
            Ok(Some(added)) => println!(
                "[{group}] added {} (epoch {})",
                request.client, added.commit.epoch
            ),
            Ok(None) => println!("[{group}] {} is in the group already", request.client),
            Err(error) => println!("[{group}] could not add {}: {error}", request.client),
        }
    }
    Ok(())
}

/// `confide devices [USER]`: the user's devices, each with what this
/// client concluded about its certificate.
pub async fn devices(
    client: &mut Client,
    user: Option<&str>,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let user = user.unwrap_or(client.id().user()).to_string();
    let devices = client.devices(&user).await?;
    if devices.is_empty() {
        anyhow::bail!(
            "{} has no devices on this server: is the name right?",
            safe(&user)
        );
    }
    for device in devices {
        let status = match &device.status {
            DeviceStatus::Certified => "certified".to_string(),
            DeviceStatus::Revoked => "revoked".to_string(),
            DeviceStatus::Uncertified(why) => format!("NOT CERTIFIED ({})", safe(why)),
        };
        writeln!(out, "{}  {}  {status}", device.client, device.fingerprint)?;
        out.json(serde_json::json!({
            "client": device.client.to_string(),
            "fingerprint": device.fingerprint,
            "status": match &device.status {
                DeviceStatus::Certified => "certified",
                DeviceStatus::Revoked => "revoked",
                DeviceStatus::Uncertified(_) => "not-certified",
            },
            "reason": match &device.status {
                DeviceStatus::Uncertified(why) => Some(why.as_str()),
                _ => None,
            },
        }));
    }
    Ok(())
}

/// `confide remove-device USER/DEVICE`: revokes the device and removes it
/// from every group of this device.
pub async fn remove_device(
    client: &mut Client,
    target: &str,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let target = ClientId::from_identity(target.as_bytes())?;
    let removals = client.remove_device(&target).await?;
    writeln!(out, "revoked {target}")?;
    out.json(serde_json::json!({
        "revoked": target.to_string(),
        "groups": removals.iter().map(|removal| serde_json::json!({
            "group": hex::encode(&removal.group),
            "epoch": removal.outcome.as_ref().ok().map(|commit| commit.epoch),
            "error": removal.outcome.as_ref().err().map(ToString::to_string),
        })).collect::<Vec<_>>(),
    }));
    for removal in removals {
        let group = hex::encode(&removal.group);
        match removal.outcome {
            Ok(commit) => writeln!(out, "[{group}] removed {target} (epoch {})", commit.epoch)?,
            Err(error) => writeln!(out, "[{group}] could not remove {target}: {error}")?,
        }
    }
    Ok(())
}
