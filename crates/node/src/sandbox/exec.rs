//! `kubectl exec` into a running container: `runc exec` with the request's
//! streams. Without a TTY the streams are pipes. With one, runc's stdio is
//! the slave of a pseudo-terminal we open (made runc's controlling terminal
//! by util-linux `setsid --ctty`), so runc puts its own terminal in raw mode
//! and forwards window-size changes: a resize is a `TIOCSWINSZ` on our
//! master, which the kernel turns into SIGWINCH for runc.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::{ExecRequest, Input, Output, RuntimeError, TerminalSize};

/// Copy `input` into `w` until it ends, then close `w` (EOF for the process).
async fn pump_in<W: tokio::io::AsyncWrite + Unpin>(mut input: Input, mut w: W) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let _ = w.flush().await;
            }
        }
    }
    let _ = w.shutdown().await;
}

/// Copy `r` into `out` until `r` ends.
async fn pump_out<R: tokio::io::AsyncRead + Unpin>(mut r: R, mut out: Output) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = out.flush().await;
            }
        }
    }
    let _ = out.shutdown().await;
}

/// Run `request` in container `id`; returns the command's exit code.
pub async fn exec(
    runtime: &Path,
    runtime_root: &Path,
    id: &str,
    request: ExecRequest,
) -> Result<i32, RuntimeError> {
    if request.command.is_empty() {
        return Err(RuntimeError::Failed("no command given".into()));
    }
    if request.tty {
        return exec_tty(runtime, runtime_root, id, request).await;
    }
    let mut child = tokio::process::Command::new(runtime)
        .arg("--root")
        .arg(runtime_root)
        .arg("exec")
        .arg(id)
        .args(&request.command)
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut tasks = Vec::new();
    if let (Some(input), Some(w)) = (request.stdin, child.stdin.take()) {
        tasks.push(tokio::spawn(pump_in(input, w)));
    }
    let mut outs = Vec::new();
    if let Some(r) = child.stdout.take() {
        match request.stdout {
            Some(out) => outs.push(tokio::spawn(pump_out(r, out))),
            None => outs.push(tokio::spawn(pump_out(r, Box::pin(tokio::io::sink())))),
        }
    }
    if let Some(r) = child.stderr.take() {
        match request.stderr {
            Some(out) => outs.push(tokio::spawn(pump_out(r, out))),
            None => outs.push(tokio::spawn(pump_out(r, Box::pin(tokio::io::sink())))),
        }
    }
    let status = child.wait().await?;
    for t in outs {
        let _ = t.await;
    }
    for t in tasks {
        t.abort();
    }
    Ok(status.code().unwrap_or(128 + 9))
}

fn set_size(master: &OwnedFd, size: TerminalSize) {
    let ws = rustix::termios::Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, ws);
}

async fn exec_tty(
    runtime: &Path,
    runtime_root: &Path,
    id: &str,
    request: ExecRequest,
) -> Result<i32, RuntimeError> {
    let io = |e: rustix::io::Errno| RuntimeError::Io(std::io::Error::from(e));
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(io)?;
    rustix::pty::grantpt(&master).map_err(io)?;
    rustix::pty::unlockpt(&master).map_err(io)?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(io)?;
    let slave_path = std::path::PathBuf::from(name.to_string_lossy().into_owned());
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)?;
    let mut resize = request.resize;
    // The first size, before the process starts: kubectl sends it right
    // after connecting, so give it a moment to arrive (a process that reads
    // its size at once would otherwise see 0x0).
    if let Some(rx) = resize.as_mut() {
        if let Ok(Some(size)) =
            tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await
        {
            set_size(&master, size);
        }
    }
    let mut child = tokio::process::Command::new("setsid")
        .arg("--ctty")
        .arg(runtime)
        .arg("--root")
        .arg(runtime_root)
        .arg("exec")
        .arg("--tty")
        .args(["--env", "TERM=xterm"])
        .arg(id)
        .args(&request.command)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true)
        .spawn()?;
    // One descriptor for each direction of the master.
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let mut tasks = Vec::new();
    if let Some(input) = request.stdin {
        tasks.push(tokio::spawn(async move {
            let mut input = input;
            let mut w = writer;
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = input.read(&mut buf).await {
                if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = w.flush().await;
            }
            // A terminal has no EOF of its own: ^D.
            let _ = w.write_all(&[4]).await;
        }));
    }
    if let Some(mut rx) = resize {
        let m = master.try_clone()?;
        tasks.push(tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                set_size(&m, size);
            }
        }));
    }
    let out = match request.stdout {
        Some(o) => o,
        None => Box::pin(tokio::io::sink()),
    };
    // Reading the master of a pty blocks a thread (no epoll on this fd
    // kind through tokio::fs), and ends with EIO once every slave is closed.
    let copier = tokio::spawn(pump_out(reader, out));
    let status = child.wait().await?;
    // The process is gone: what it wrote is in the pty buffer; closing our
    // master copies ends the reader with EIO after the buffer is drained.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), copier).await;
    for t in tasks {
        t.abort();
    }
    drop(master);
    Ok(status.code().unwrap_or(128 + 9))
}
