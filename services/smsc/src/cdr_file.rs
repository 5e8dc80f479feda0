//! `cdr.file`: the CDRs of `<prefix>.cdr` appended to a file as JSON lines (docs/cdr.md),
//! for `smsc all` and development. A record is acknowledged once its line is written and
//! flushed: a crash may write a line twice (same `idempotency_key`), never lose one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use prost::Message as _;
use serde_json::{Value, json};
use smsc_bus::{Bus, BusError, Delivery};
use smsc_proto::{Address, Cdr};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Records written per flush at most.
const BATCH: usize = 512;

/// One CDR as the file has it.
pub(crate) fn json(c: &Cdr) -> Value {
    let address = |a: &Option<Address>| {
        a.as_ref().map_or(Value::Null, |a| json!({ "ton": a.ton, "npi": a.npi, "addr": a.addr }))
    };
    json!({
        "idempotency_key": c.idempotency_key,
        "message_id": c.message_id,
        "dest_index": c.dest_index,
        "system_id": c.system_id,
        "source": address(&c.source),
        "dest": address(&c.dest),
        "part": c.part,
        "parts": c.parts,
        "data_coding": c.data_coding,
        "submitted_at_ms": c.submitted_at_ms,
        "first_attempt_at_ms": c.first_attempt_at_ms,
        "final_at_ms": c.final_at_ms,
        "state": c.state,
        "error_code": c.error_code,
        "route": c.route,
        "connector": c.connector,
        "attempts": c.attempts,
        "class": c.class,
        "origin": c.origin,
    })
}

/// Reads `topic` as consumer group `group` and appends to `path` until `shutdown`.
pub(crate) async fn run(
    bus: Arc<dyn Bus>,
    topic: Arc<str>,
    group: String,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    let Some(mut consumer) =
        smsc_bus::lanes::join(&bus, &group, &[&topic], BATCH, &shutdown, None).await
    else {
        return;
    };
    let opened = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await;
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cdr.file cannot be opened; no CDR file");
            return;
        }
    };
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            r = consumer.recv() => r,
        };
        let mut batch: Vec<Delivery> = Vec::new();
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Ok(d) => batch.push(d),
                Err(BusError::Closed) => return,
                Err(e) => {
                    warn!(error = %smsc_runtime::telemetry::error_chain(&e), "reading CDRs failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if batch.len() < BATCH {
                next = consumer.recv().now_or_never();
            }
        }
        let mut lines = Vec::new();
        for d in &batch {
            match Cdr::decode(d.record.payload.clone()) {
                Ok(c) => {
                    lines.extend_from_slice(json(&c).to_string().as_bytes());
                    lines.push(b'\n');
                }
                Err(e) => warn!(error = %e, "undecodable CDR skipped"),
            }
        }
        // Written before acknowledged; a failing disk holds the CDRs on the bus.
        while let Err(e) = write(&mut file, &lines).await {
            warn!(path = %path.display(), error = %e, "writing CDRs failed; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        for d in &batch {
            let _ = consumer.ack(d);
        }
    }
}

/// Written and on disk (not only in the page cache): a host that fails loses no line
/// whose records were acknowledged.
async fn write(file: &mut tokio::fs::File, lines: &[u8]) -> std::io::Result<()> {
    file.write_all(lines).await?;
    file.flush().await?;
    file.sync_data().await
}
