//! The connection and the bind: [`connect`] as [`BindAs`] says, answering enquire_link
//! while the bind response is awaited.

use std::io::ErrorKind;
use std::time::Duration;

use bytes::BytesMut;
use smsc_smpp::pdu::Bind;
use smsc_smpp::{
    Body, COctetString, CommandId, DEFAULT_MAX_COMMAND_LENGTH, Header, Pdu, split_frame,
};
use tokio::net::TcpStream;

use super::state::{encoded, put};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindAs {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindAs {
    fn body(self, b: Bind) -> Body {
        match self {
            Self::Transmitter => Body::BindTransmitter(b),
            Self::Receiver => Body::BindReceiver(b),
            Self::Transceiver => Body::BindTransceiver(b),
        }
    }

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Transmitter => "bind_transmitter",
            Self::Receiver => "bind_receiver",
            Self::Transceiver => "bind_transceiver",
        }
    }
}

/// Connects and binds; returns the socket and anything read past the bind response.
pub(crate) async fn connect(
    target: &str,
    bind_as: BindAs,
    system_id: &str,
    password: &str,
    system_type: &str,
    timeout: Duration,
) -> Result<(TcpStream, BytesMut), String> {
    let work = async {
        let stream =
            TcpStream::connect(target).await.map_err(|e| format!("connect {target}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("{target}: TCP_NODELAY: {e}"))?;
        let bind = Bind {
            system_id: cstr(system_id)?,
            password: cstr(password)?,
            system_type: cstr(system_type)?,
            interface_version: smsc_smpp::types::INTERFACE_VERSION_34,
            ..Bind::default()
        };
        let out = encoded(Pdu::new(1, bind_as.body(bind)));
        write_all(&stream, &out)
            .await
            .map_err(|e| format!("{target}: write {}: {e}", bind_as.name()))?;
        let mut rbuf = BytesMut::with_capacity(4096);
        loop {
            while let Some(frame) = split_frame(&mut rbuf, DEFAULT_MAX_COMMAND_LENGTH)
                .map_err(|e| format!("{target}: framing lost during the bind: {e}"))?
            {
                let Some(h) = Header::peek(&frame) else { continue };
                match h.command() {
                    Some(CommandId::EnquireLink) => {
                        let mut o = Vec::new();
                        put(
                            &mut o,
                            &encoded(Pdu::new(0, Body::EnquireLinkResp)),
                            h.sequence_number,
                        );
                        write_all(&stream, &o).await.map_err(|e| format!("{target}: {e}"))?;
                    }
                    Some(CommandId::GenericNack) => {
                        return Err(format!(
                            "{target}: {} answered by generic_nack {}",
                            bind_as.name(),
                            h.command_status
                        ));
                    }
                    Some(c) if c.is_response() && h.sequence_number == 1 => {
                        if !h.command_status.is_ok() {
                            return Err(format!(
                                "{target}: {} as {system_id:?} refused: {}",
                                bind_as.name(),
                                h.command_status
                            ));
                        }
                        return Ok((stream, rbuf));
                    }
                    _ => {}
                }
            }
            rbuf.reserve(4096);
            stream.readable().await.map_err(|e| format!("{target}: {e}"))?;
            match stream.try_read_buf(&mut rbuf) {
                Ok(0) => {
                    return Err(format!("{target}: connection closed during {}", bind_as.name()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("{target}: read: {e}")),
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{target}: no {}_resp within {timeout:?}", bind_as.name())),
    }
}

fn cstr<const N: usize>(s: &str) -> Result<COctetString<N>, String> {
    COctetString::new(s.as_bytes()).map_err(|e| format!("{s:?}: {e}"))
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
