//! An in-memory transport: two connected sessions in one process, for tests
//! of the session drivers without sockets. No flow control: writes never block.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::transport::{RecvStream, SendStream, Session, TransportError};

#[derive(Debug)]
enum Chunk {
    Data(Bytes),
    Fin,
    Reset(u32),
}

type Bi = (MemSend, MemRecv);

#[derive(Debug)]
struct Side {
    bi: Mutex<mpsc::UnboundedReceiver<Bi>>,
    uni: Mutex<mpsc::UnboundedReceiver<MemRecv>>,
    datagrams: Mutex<mpsc::UnboundedReceiver<Bytes>>,
}

#[derive(Debug)]
struct Link {
    bi: mpsc::UnboundedSender<Bi>,
    uni: mpsc::UnboundedSender<MemRecv>,
    datagrams: mpsc::UnboundedSender<Bytes>,
}

/// How a connection was closed: by which end (0 or 1), with what code and reason.
type Closed = Option<(u8, u32, String)>;

/// One end of an in-memory connection.
#[derive(Debug, Clone)]
pub struct MemSession {
    /// Which end this is (0 or 1), to tell our close from the peer's.
    end: u8,
    side: Arc<Side>,
    peer: Arc<Link>,
    closed: watch::Sender<Closed>,
}

/// Two connected sessions.
pub fn pair() -> (MemSession, MemSession) {
    let (a_bi_tx, a_bi_rx) = mpsc::unbounded_channel();
    let (a_uni_tx, a_uni_rx) = mpsc::unbounded_channel();
    let (a_dg_tx, a_dg_rx) = mpsc::unbounded_channel();
    let (b_bi_tx, b_bi_rx) = mpsc::unbounded_channel();
    let (b_uni_tx, b_uni_rx) = mpsc::unbounded_channel();
    let (b_dg_tx, b_dg_rx) = mpsc::unbounded_channel();
    let (closed, _) = watch::channel(None);
    let a = MemSession {
        end: 0,
        side: Arc::new(Side {
            bi: Mutex::new(a_bi_rx),
            uni: Mutex::new(a_uni_rx),
            datagrams: Mutex::new(a_dg_rx),
        }),
        peer: Arc::new(Link {
            bi: b_bi_tx,
            uni: b_uni_tx,
            datagrams: b_dg_tx,
        }),
        closed: closed.clone(),
    };
    let b = MemSession {
        end: 1,
        side: Arc::new(Side {
            bi: Mutex::new(b_bi_rx),
            uni: Mutex::new(b_uni_rx),
            datagrams: Mutex::new(b_dg_rx),
        }),
        peer: Arc::new(Link {
            bi: a_bi_tx,
            uni: a_uni_tx,
            datagrams: a_dg_tx,
        }),
        closed,
    };
    (a, b)
}

fn pipe() -> (MemSend, MemRecv) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None);
    (
        MemSend {
            tx,
            stopped: stop_rx,
            done: false,
        },
        MemRecv {
            rx,
            pending: None,
            stop: stop_tx,
        },
    )
}

fn closed_error() -> TransportError {
    TransportError::new("connection closed")
}

impl MemSession {
    async fn wait_closed(&self) -> TransportError {
        let mut rx = self.closed.subscribe();
        match rx.wait_for(|c| c.is_some()).await {
            Ok(c) => match c.as_ref() {
                Some((_, code, reason)) => TransportError::new(format!("closed with code {code}: {reason}")),
                None => closed_error(),
            },
            Err(_) => closed_error(),
        }
    }

    /// Send a datagram to the peer.
    pub fn send_datagram(&self, datagram: Bytes) -> Result<(), TransportError> {
        self.peer.datagrams.send(datagram).map_err(|_| closed_error())
    }

    /// How the connection was closed, if it was.
    pub fn close_reason(&self) -> Option<(u32, String)> {
        self.closed
            .borrow()
            .as_ref()
            .map(|(_, code, reason)| (*code, reason.clone()))
    }
}

async fn recv_from<T>(rx: &Mutex<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    // Poll under the lock without holding it across an await.
    std::future::poll_fn(|cx| {
        let mut rx = rx.lock().unwrap_or_else(|e| e.into_inner());
        rx.poll_recv(cx)
    })
    .await
}

impl Session for MemSession {
    type SendStream = MemSend;
    type RecvStream = MemRecv;

    async fn open_bi(&self) -> Result<(MemSend, MemRecv), TransportError> {
        let (a_send, b_recv) = pipe();
        let (b_send, a_recv) = pipe();
        self.peer.bi.send((b_send, b_recv)).map_err(|_| closed_error())?;
        Ok((a_send, a_recv))
    }

    async fn open_uni(&self) -> Result<MemSend, TransportError> {
        let (send, recv) = pipe();
        self.peer.uni.send(recv).map_err(|_| closed_error())?;
        Ok(send)
    }

    async fn accept_bi(&self) -> Result<(MemSend, MemRecv), TransportError> {
        tokio::select! {
            s = recv_from(&self.side.bi) => s.ok_or_else(closed_error),
            e = self.wait_closed() => Err(e),
        }
    }

    async fn accept_uni(&self) -> Result<MemRecv, TransportError> {
        tokio::select! {
            s = recv_from(&self.side.uni) => s.ok_or_else(closed_error),
            e = self.wait_closed() => Err(e),
        }
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        tokio::select! {
            s = recv_from(&self.side.datagrams) => s.ok_or_else(closed_error),
            e = self.wait_closed() => Err(e),
        }
    }

    fn close(&self, code: u32, reason: &str) {
        self.closed.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some((self.end, code, reason.to_string()));
            true
        });
    }

    async fn closed(&self) -> TransportError {
        self.wait_closed().await
    }

    fn peer_close(&self) -> Option<(u32, String)> {
        match self.closed.borrow().as_ref() {
            Some((by, code, reason)) if *by != self.end => Some((*code, reason.clone())),
            _ => None,
        }
    }
}

/// Sending half of an in-memory stream.
#[derive(Debug)]
pub struct MemSend {
    tx: mpsc::UnboundedSender<Chunk>,
    stopped: watch::Receiver<Option<u32>>,
    done: bool,
}

impl MemSend {
    fn check(&self) -> Result<(), TransportError> {
        if let Some(code) = *self.stopped.borrow() {
            return Err(TransportError {
                code: Some(code),
                message: format!("stopped by peer with code {code}"),
            });
        }
        if self.done {
            return Err(TransportError::new("stream already finished"));
        }
        Ok(())
    }
}

impl SendStream for MemSend {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), TransportError> {
        self.check()?;
        self.tx
            .send(Chunk::Data(Bytes::copy_from_slice(buf)))
            .map_err(|_| TransportError::new("peer dropped the stream"))
    }

    async fn write_chunk(&mut self, buf: Bytes) -> Result<(), TransportError> {
        self.check()?;
        self.tx
            .send(Chunk::Data(buf))
            .map_err(|_| TransportError::new("peer dropped the stream"))
    }

    fn set_priority(&mut self, _: i32) {}

    fn finish(&mut self) -> Result<(), TransportError> {
        self.check()?;
        self.done = true;
        let _ = self.tx.send(Chunk::Fin);
        Ok(())
    }

    fn reset(&mut self, code: u32) {
        if !self.done {
            self.done = true;
            let _ = self.tx.send(Chunk::Reset(code));
        }
    }
}

/// Receiving half of an in-memory stream.
#[derive(Debug)]
pub struct MemRecv {
    rx: mpsc::UnboundedReceiver<Chunk>,
    pending: Option<Bytes>,
    stop: watch::Sender<Option<u32>>,
}

impl RecvStream for MemRecv {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        let mut chunk = match self.pending.take() {
            Some(chunk) => chunk,
            None => match self.rx.recv().await {
                Some(Chunk::Data(chunk)) => chunk,
                Some(Chunk::Fin) => return Ok(None),
                Some(Chunk::Reset(code)) => {
                    return Err(TransportError {
                        code: Some(code),
                        message: format!("reset by peer with code {code}"),
                    });
                }
                None => return Err(TransportError::new("stream dropped")),
            },
        };
        if chunk.len() > max {
            self.pending = Some(chunk.split_off(max));
        }
        Ok(Some(chunk))
    }

    fn stop(&mut self, code: u32) {
        let _ = self.stop.send(Some(code));
        self.rx.close();
    }
}
