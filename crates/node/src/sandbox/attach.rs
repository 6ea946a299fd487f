//! `kubectl attach` on the real node. The supervisor owns every container's
//! stdio: the write end of its stdin pipe, or with `tty: true` the master of
//! the pseudo-terminal runc allocates (runc hands it over through
//! `--console-socket` as an `SCM_RIGHTS` message). An `attach` request turns
//! a supervisor connection into a stream of frames in both directions:
//!
//! ```text
//! [kind: u8][length: u32, big endian][payload]
//! ```
//!
//! From the supervisor: [`STDOUT`], [`STDERR`] (terminal output is stdout).
//! To it: [`STDIN`] bytes, [`STDIN_EOF`] (the client's stdin ended),
//! [`RESIZE`] (width, height: two big-endian `u16`). The supervisor closes
//! the connection once the container's output is all copied.
//!
//! As with containerd: output is what the container writes while attached
//! (no replay); when the client's stdin ends, a `stdinOnce` container
//! without a terminal gets EOF and the attach goes on until the output
//! ends, any other attach ends there.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::sync::mpsc;

use super::supervisor::{Client, SupervisorError};
use crate::runtime::{ExecRequest, Output, RuntimeError, TerminalSize};

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const STDIN_EOF: u8 = 3;
pub(crate) const RESIZE: u8 = 4;

/// Largest payload a frame may carry.
const MAX_FRAME: usize = 1 << 20;

/// Write one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Read one frame; `None` when the peer closed between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// The payload of a [`RESIZE`] frame.
pub(crate) fn resize_payload(size: TerminalSize) -> [u8; 4] {
    let w = size.width.to_be_bytes();
    let h = size.height.to_be_bytes();
    [w[0], w[1], h[0], h[1]]
}

/// The size in a [`RESIZE`] frame.
pub(crate) fn parse_resize(payload: &[u8]) -> Option<TerminalSize> {
    match payload {
        [w0, w1, h0, h1] => Some(TerminalSize {
            width: u16::from_be_bytes([*w0, *w1]),
            height: u16::from_be_bytes([*h0, *h1]),
        }),
        _ => None,
    }
}

/// Take the one descriptor of an `SCM_RIGHTS` message on `sock`.
fn recv_fd(sock: impl AsFd) -> io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(&mut data)];
    rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other(
        "the console socket message carried no descriptor",
    ))
}

/// Accept runc's connection on its `--console-socket` and receive the
/// terminal's master from it.
pub(crate) async fn recv_console(listener: &tokio::net::UnixListener) -> io::Result<OwnedFd> {
    let (stream, _) = listener.accept().await?;
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv_fd(&stream)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// The master side of a container's pseudo-terminal. Reads and writes go
/// through tokio's blocking pool (as `tokio::fs` does): registering a
/// descriptor of this kind with the reactor needs `unsafe` in tokio.
#[derive(Debug)]
pub(crate) struct Pty {
    control: OwnedFd,
    reader: tokio::sync::Mutex<tokio::fs::File>,
    writer: tokio::sync::Mutex<tokio::fs::File>,
}

impl Pty {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Pty> {
        rustix::io::ioctl_fionbio(&fd, false)?;
        let file = |fd: OwnedFd| {
            tokio::sync::Mutex::new(tokio::fs::File::from_std(std::fs::File::from(fd)))
        };
        Ok(Pty {
            reader: file(fd.try_clone()?),
            writer: file(fd.try_clone()?),
            control: fd,
        })
    }

    /// Read output; `Ok(0)` once no process holds the terminal any more
    /// (the kernel's `EIO` on the master).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.reader.lock().await.read(buf).await {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Ok(0),
            other => other,
        }
    }

    pub(crate) async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(data).await?;
        w.flush().await
    }

    pub(crate) fn resize(&self, size: TerminalSize) {
        let ws = rustix::termios::Winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&self.control, ws);
    }
}

async fn write_out(out: &mut Option<Output>, data: &[u8]) -> io::Result<()> {
    match out {
        Some(o) => {
            o.write_all(data).await?;
            o.flush().await
        }
        None => Ok(()),
    }
}

/// Attach `request`'s streams to container `id` through the supervisor.
/// Returns once the container's output ended, the supervisor ended the
/// attach (the client's stdin ended), or the client's output is gone.
pub(crate) async fn attach(
    supervisor: &Client,
    id: &str,
    request: ExecRequest,
) -> Result<(), RuntimeError> {
    let (_info, mut read, mut write) = supervisor
        .attach(id, request.stdin.is_some())
        .await
        .map_err(|e| match e {
            SupervisorError::Failed(m) => RuntimeError::Failed(m),
            other => RuntimeError::from(other),
        })?;
    let mut resize = request.resize;
    // A size the client sent already goes first, before any input.
    if let Some(rx) = resize.as_mut() {
        while let Ok(size) = rx.try_recv() {
            write_frame(&mut write, RESIZE, &resize_payload(size)).await?;
        }
    }
    // Client -> container, through one writer of the connection.
    let (tx, mut rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    let writer = tokio::spawn(async move {
        while let Some((kind, payload)) = rx.recv().await {
            if write_frame(&mut write, kind, &payload).await.is_err() {
                return;
            }
        }
        // Every input ended: keep the connection open (closing it detaches).
        std::future::pending::<()>().await;
    });
    let mut tasks = vec![writer];
    if let Some(mut input) = request.stdin {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = buf.get(..n).unwrap_or_default().to_vec();
                        if tx.send((STDIN, data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send((STDIN_EOF, Vec::new())).await;
        }));
    }
    if let Some(mut resize) = resize {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(size) = resize.recv().await {
                if tx
                    .send((RESIZE, resize_payload(size).to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let (mut stdout, mut stderr) = (request.stdout, request.stderr);
    loop {
        let frame = match read_frame(&mut read).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break, // the container's output ended
        };
        let written = match frame {
            (STDOUT, data) => write_out(&mut stdout, &data).await,
            (STDERR, data) => write_out(&mut stderr, &data).await,
            _ => Ok(()),
        };
        if written.is_err() {
            break; // the client is gone
        }
    }
    for t in tasks {
        t.abort();
    }
    for out in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = out.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_oversized_lengths() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello")
            .await
            .unwrap_or_default();
        write_frame(
            &mut buf,
            RESIZE,
            &resize_payload(TerminalSize {
                width: 91,
                height: 27,
            }),
        )
        .await
        .unwrap_or_default();
        let mut r = buf.as_slice();
        let first = read_frame(&mut r).await.ok().flatten();
        assert_eq!(first, Some((STDOUT, b"hello".to_vec())));
        let second = read_frame(&mut r).await.ok().flatten();
        let size = second.and_then(|(k, p)| (k == RESIZE).then(|| parse_resize(&p)).flatten());
        assert_eq!(
            size,
            Some(TerminalSize {
                width: 91,
                height: 27
            })
        );
        assert!(matches!(read_frame(&mut r).await, Ok(None)));
        let huge = [STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice()).await.is_err());
    }
}
