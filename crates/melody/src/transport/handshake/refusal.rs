//! Auth refusals told after the upgrade ([`Config::close_on_auth_refusal`]): the handshake is
//! accepted, a close frame with code 4000 + the refusal's status and its message is written,
//! and the connection is dropped. No session exists at any point.
//!
//! [`Config::close_on_auth_refusal`]: crate::Config::close_on_auth_refusal

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::timeout,
};

use crate::{
    core::{
        admission::AuthRejection,
        hub::Hub,
        lifecycle::{Slot, TaskGuard},
    },
    protocol::{
        close::CloseCode,
        frames::{Control, FrameReader, close_payload, put_control},
    },
};

/// How long a refused connection may take to be upgraded, take its close frame, and answer it.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Most bytes read from a refused client while waiting for its close frame.
const MAX_DRAIN: usize = 4 * 1024;

/// The close code that tells `rejection`: 4000 + its status (4401, 4403, 4503, …).
pub(super) fn refusal_code(rejection: &AuthRejection) -> CloseCode {
    CloseCode::new(4000 + rejection.status().as_u16() % 1000).unwrap_or(CloseCode::POLICY_VIOLATION)
}

/// Closes the connection being upgraded with `rejection`'s code and message. The slot and a
/// task count are held until the connection is gone, so `max_connections` and shutdown see it.
pub(super) fn close_after_upgrade(
    hub: &Arc<Hub>,
    on_upgrade: OnUpgrade,
    slot: Slot,
    rejection: &AuthRejection,
) {
    let guard = TaskGuard::new(hub.clone());
    let mut frame = BytesMut::new();
    put_control(
        &mut frame,
        Control::Close,
        &close_payload(refusal_code(rejection), &rejection.to_string()),
    );
    tokio::spawn(async move {
        let _guard = guard;
        let closed = timeout(REFUSAL_TIME, async move {
            let mut io = TokioIo::new(on_upgrade.await?);
            io.write_all(&frame).await?;
            io.flush().await?;
            // The client answers with its own close frame (perhaps after messages it sent
            // on opening): read up to it, so that the TCP close comes after it rather than
            // resetting the connection under a close frame on its way.
            // The project's frame reader is done at a close frame (or at a violation).
            let mut reader = FrameReader::new(MAX_DRAIN);
            let (mut buf, mut drained) = ([0u8; 512], 0);
            while drained < MAX_DRAIN && !reader.is_done() {
                match io.read(&mut buf).await? {
                    0 => break,
                    n => {
                        drained += n;
                        reader.feed(&buf[..n]);
                        while reader.pop().is_some() {}
                    }
                }
            }
            // Given back before the TCP close, so that once the client sees the end, the
            // slot is free again.
            drop(slot);
            io.shutdown().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await;
        if let Ok(Err(error)) = closed {
            tracing::debug!(%error, "refused connection ended with an error");
        }
    });
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn codes_carry_the_status() {
        let code = |status| u16::from(refusal_code(&AuthRejection::new(status, "no")));
        assert_eq!(code(StatusCode::UNAUTHORIZED), 4401);
        assert_eq!(code(StatusCode::FORBIDDEN), 4403);
        assert_eq!(code(StatusCode::SERVICE_UNAVAILABLE), 4503);
    }
}
