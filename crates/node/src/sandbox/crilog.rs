//! Container log files in the CRI format the kubelet reads
//! (`<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`, one line
//! per record; `P` marks a partial line that continues in the next record),
//! with size-based rotation, and the reader behind `kubectl logs`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;

/// Longest record content: longer lines are split into partial records
/// (containerd's default `max_container_log_line_size` is 16 KiB).
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends a container's output to its log file, rotating it when it grows
/// past `max_bytes` (the rotated files are `<path>.1` … `<path>.<keep-1>`,
/// newest first).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// Unterminated output per stream, waiting for its newline.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (append to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(4096),
            keep: keep.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Record `data` written by the container on `stream`: every complete
    /// line becomes an `F` record; a line longer than [`MAX_RECORD`] is cut
    /// into `P` records.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let slot = Self::slot(stream);
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.pending[slot]);
                    line.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    self.emit_line(stream, &line)?;
                }
                None => {
                    self.pending[slot].extend_from_slice(rest);
                    rest = &[];
                    while self.pending[slot].len() >= MAX_RECORD {
                        let chunk: Vec<u8> = self.pending[slot].drain(..MAX_RECORD).collect();
                        self.record(stream, false, &chunk)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn emit_line(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let mut chunks = line.chunks(MAX_RECORD).peekable();
        if chunks.peek().is_none() {
            return self.record(stream, true, &[]);
        }
        while let Some(chunk) = chunks.next() {
            self.record(stream, chunks.peek().is_none(), chunk)?;
        }
        Ok(())
    }

    /// The stream ended: what is left without a newline becomes a full record.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let slot = Self::slot(stream);
        if !self.pending[slot].is_empty() {
            let line = std::mem::take(&mut self.pending[slot]);
            self.emit_line(stream, &line)?;
        }
        self.file.flush()
    }

    fn record(&mut self, stream: Stream, full: bool, content: &[u8]) -> io::Result<()> {
        let ts = Timestamp::now();
        let mut buf = Vec::with_capacity(content.len() + 48);
        write!(
            buf,
            "{ts:.9} {} {} ",
            stream.as_str(),
            if full { 'F' } else { 'P' }
        )?;
        buf.extend_from_slice(content);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        for i in (1..self.keep).rev() {
            let from = rotated(&self.path, i);
            if i + 1 >= self.keep {
                let _ = std::fs::remove_file(&from);
                continue;
            }
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        if self.keep > 1 {
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The `n`-th rotated file of `path`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: Timestamp,
    pub stream: Stream,
    /// `false` for a partial record (the line goes on in the next one).
    pub full: bool,
    pub content: Vec<u8>,
}

/// Parse one record line (without its newline). Malformed lines are `None`.
pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time: ts.parse().ok()?,
        stream,
        full,
        content,
    })
}

/// What to read, as `kubectl logs` asks.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
}

/// Render a record as `kubectl logs` prints it: the content, a newline for
/// a full record, and the timestamp first when asked (on the first piece of
/// a line only).
pub fn render(rec: &Record, timestamps: bool, line_start: bool, out: &mut Vec<u8>) {
    if timestamps && line_start {
        out.extend_from_slice(format!("{:.9} ", rec.time).as_bytes());
    }
    out.extend_from_slice(&rec.content);
    if rec.full {
        out.push(b'\n');
    }
}

/// The files of a log, oldest first (rotated ones, then the live one).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..64)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Read what the log holds now. Returns the rendered bytes and the position
/// reached in the live file (to follow from).
pub fn read_all(path: &Path, opts: &ReadOptions) -> io::Result<(Vec<u8>, u64)> {
    let mut records: Vec<Record> = Vec::new();
    let mut end = 0;
    for f in files(path) {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // a record still being written is read next time
            }
            pos += n as u64;
            line.pop();
            if let Some(rec) = parse(&line) {
                if opts.since.is_none_or(|s| rec.time >= s) {
                    records.push(rec);
                }
            }
        }
        if f == path {
            end = pos;
        }
    }
    let start = match opts.tail_lines {
        None => 0,
        Some(n) => {
            // Count full lines from the end; partial records belong to the
            // full one after them.
            let mut count = 0u64;
            let mut idx = records.len();
            for (i, rec) in records.iter().enumerate().rev() {
                if rec.full {
                    if count == n {
                        break;
                    }
                    count += 1;
                }
                idx = i;
            }
            if n == 0 {
                records.len()
            } else {
                idx
            }
        }
    };
    let mut out = Vec::new();
    let mut line_start = true;
    for rec in &records[start..] {
        render(rec, opts.timestamps, line_start, &mut out);
        line_start = rec.full;
    }
    Ok((out, end))
}

/// Read the records appended to the live file after `pos`; returns the
/// rendered bytes and the new position. A file shorter than `pos` was
/// rotated: reading starts again at its beginning.
pub fn read_from(path: &Path, pos: u64, timestamps: bool) -> io::Result<(Vec<u8>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut pos = if len < pos { 0 } else { pos };
    file.seek(SeekFrom::Start(pos))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut line_start = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        line.pop();
        if let Some(rec) = parse(&line) {
            render(&rec, timestamps, line_start, &mut out);
            line_start = rec.full;
        }
    }
    Ok((out, pos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(path: &Path, opts: &ReadOptions) -> String {
        String::from_utf8(read_all(path, opts).unwrap().0).unwrap()
    }

    #[test]
    fn lines_partials_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 1 << 20, 3).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\nthree").unwrap();
        w.finish(Stream::Stdout).unwrap();
        let raw = std::fs::read_to_string(&path).unwrap();
        assert_eq!(raw.lines().count(), 4, "{raw}");
        assert!(
            raw.lines().nth(1).unwrap().contains(" stderr F err"),
            "{raw}"
        );
        assert_eq!(
            text(&path, &ReadOptions::default()),
            "one\nerr\ntwo\nthree\n"
        );
        let tail = ReadOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(text(&path, &tail), "two\nthree\n");
        let none = ReadOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(text(&path, &none), "");
        let ts = ReadOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let t = text(&path, &ts);
        let (stamp, rest) = t.split_once(' ').unwrap();
        assert!(stamp.parse::<Timestamp>().is_ok(), "{t}");
        assert_eq!(rest, "three\n");
    }

    #[test]
    fn long_lines_are_split_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 1 << 20, 3).unwrap();
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        w.write(Stream::Stdout, &long).unwrap();
        w.write(Stream::Stdout, b"\nend\n").unwrap();
        let raw = std::fs::read_to_string(&path).unwrap();
        assert_eq!(raw.matches(" P ").count(), 2);
        let out = text(
            &path,
            &ReadOptions {
                tail_lines: Some(2),
                timestamps: true,
                ..Default::default()
            },
        );
        // One timestamp per line, however many records it took.
        assert_eq!(out.lines().count(), 2);
        assert_eq!(out.lines().next().unwrap().len(), 31 + MAX_RECORD * 2 + 10);
    }

    #[test]
    fn rotation_keeps_recent_files_and_readers_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 4096, 3).unwrap();
        for i in 0..400 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let all = text(&path, &ReadOptions::default());
        assert!(all.ends_with("line 399\n"));
        assert!(!all.starts_with("line 0\n"), "oldest output rotated away");
        let (_, pos) = read_all(&path, &ReadOptions::default()).unwrap();
        w.write(Stream::Stdout, b"after\n").unwrap();
        let (more, _) = read_from(&path, pos, false).unwrap();
        assert_eq!(more, b"after\n");
    }
}
