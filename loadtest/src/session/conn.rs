//! The session's task: its loop (step, write, wait for the socket or the clock), the
//! reads and writes, and the [`Outcome`] handed back at the end.

use std::io::ErrorKind;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::state::{Outcome, Phase, Session};
use super::{IDLE_TICK, READ_CHUNK};

impl Session {
    fn finished(&self, now_ns: u64) -> bool {
        self.closed
            || self.unbind_acked
            || self.unbind_deadline.is_some_and(|d| now_ns >= d)
            || (self.peer_unbound && self.wpos == self.wbuf.len())
    }

    fn flush(&mut self, stream: &TcpStream) {
        while self.wpos < self.wbuf.len() {
            match stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(n) => {
                    self.wpos += n;
                    self.stats.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    break;
                }
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
    }

    fn read(&mut self, stream: &TcpStream, rbuf: &mut BytesMut) {
        rbuf.reserve(READ_CHUNK);
        match stream.try_read_buf(rbuf) {
            Ok(0) => {
                if self.unbind_seq.is_none() && !self.peer_unbound {
                    let n = self.in_flight;
                    self.fail(format!("connection closed by the SMSC ({n} submits in flight)"));
                }
                self.closed = true;
            }
            Ok(n) => {
                self.stats.bytes_received += n as u64;
                let now_ns = self.now_ns();
                self.process(rbuf, now_ns);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(format!("read: {e}")),
        }
    }

    /// Runs the session until the runner stops it or the connection ends.
    pub(crate) async fn run(mut self, stream: TcpStream, mut rbuf: BytesMut) -> Outcome {
        let t0 = self.shared.t0;
        // The runner's tokens are looked at on every pass and at least every IDLE_TICK,
        // not awaited: polling their futures takes a lock shared by every session.
        let sleep = tokio::time::sleep(IDLE_TICK);
        tokio::pin!(sleep);
        // Resetting the timer takes the timer driver's lock: only when it must fire sooner.
        let mut timer_at = u64::MAX;
        if !rbuf.is_empty() {
            let now_ns = self.now_ns();
            self.process(&mut rbuf, now_ns);
        }
        loop {
            let now_ns = self.now_ns();
            let wake = self.step(now_ns);
            self.live.publish(&self.stats, self.in_flight);
            self.flush(&stream);
            if self.finished(now_ns) {
                break;
            }
            if wake < timer_at || timer_at <= now_ns {
                sleep.as_mut().reset((t0 + Duration::from_nanos(wake)).into());
                timer_at = wake;
            }
            let pending = self.wpos < self.wbuf.len();
            tokio::select! {
                biased;
                r = stream.readable() => match r {
                    Ok(()) => self.read(&stream, &mut rbuf),
                    Err(e) => self.fail(format!("readable: {e}")),
                },
                r = stream.writable(), if pending => {
                    if let Err(e) = r {
                        self.fail(format!("writable: {e}"));
                    }
                }
                () = &mut sleep => {}
            }
        }
        if self.phase != Phase::Done {
            self.abandon();
            if self.stats.load_end_ns == 0 && self.phase == Phase::Load {
                self.stats.load_end_ns = self.now_ns();
            }
        }
        if self.in_flight > 0 {
            self.abandon();
        }
        self.live.publish(&self.stats, 0);
        self.live.drained.store(true, Relaxed);
        self.live.closed.store(true, Relaxed);
        Outcome {
            scenario: self.sc.index,
            stats: self.stats,
            pending: self.pending,
            orphans: self.orphans,
        }
    }
}
