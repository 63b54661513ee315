//! The server's log output. A review's log line is appended to a buffer in memory
//! and a thread of its own writes the buffer to stderr. A line logged while that
//! thread is idle is written at once; after each write the thread gathers for
//! [`INTERVAL`] (less when [`WRITE_AT`] bytes have gathered), so under load thousands
//! of lines a second cost a few writes. A review never waits for a write to stderr,
//! nor for another review's write. Nothing is dropped: when stderr cannot keep up,
//! loggers wait at [`MAX_BUFFERED`].

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after a write.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// Gathered bytes that wake the writer at once.
const WRITE_AT: usize = 64 * 1024;
/// Gathered bytes at which loggers wait for the writer.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (buffer full, or stopping).
    to_writer: Condvar,
    /// Wakes loggers waiting for room.
    to_loggers: Condvar,
}

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    stopping: bool,
    /// The writer waits for a first line (not gathering): a line must wake it.
    idle: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A logger that panicked mid-append leaves at worst a partial line.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Gathers log lines for the writer thread (a `MakeWriter` for tracing-subscriber).
#[derive(Clone)]
pub(crate) struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written every gathered line.
pub(crate) struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread.
pub(crate) fn batched_stderr() -> std::io::Result<(BatchedStderr, WriterGuard)> {
    start(std::io::stderr())
}

fn start(mut out: impl Write + Send + 'static) -> std::io::Result<(BatchedStderr, WriterGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        to_writer: Condvar::new(),
        to_loggers: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("vulngate-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_loop(&shared, &mut out)
        })?;
    Ok((
        BatchedStderr {
            shared: Arc::clone(&shared),
        },
        WriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_loop(shared: &Shared, out: &mut impl Write) {
    let mut batch = Vec::new();
    loop {
        let stopping = {
            let mut state = shared.lock();
            // Idle until a line comes...
            state.idle = true;
            while state.buffer.is_empty() && !state.stopping {
                state = shared
                    .to_writer
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            // The emptied batch goes back as the next buffer: no allocation per round.
            batch.clear();
            std::mem::swap(&mut batch, &mut state.buffer);
            state.stopping
        };
        shared.to_loggers.notify_all();
        // Nowhere to report a failed write to stderr; later lines are tried again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        if stopping {
            return;
        }
        // ...then gather for a while, unless much has gathered or we are stopping.
        let state = shared.lock();
        drop(
            shared
                .to_writer
                .wait_timeout_while(state, INTERVAL, |s| {
                    s.buffer.len() < WRITE_AT && !s.stopping
                })
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.to_writer.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log event's bytes, appended whole so lines of concurrent reviews never mix.
pub(crate) struct LineSink<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> LineSink<'a> {
        LineSink {
            shared: &self.shared,
        }
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if state.stopping {
            // After shutdown nothing writes the buffer any more: write directly.
            drop(state);
            return std::io::stderr().write(bytes);
        }
        while state.buffer.len() >= MAX_BUFFERED && !state.stopping {
            self.shared.to_writer.notify_one();
            state = self
                .shared
                .to_loggers
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.buffer.extend_from_slice(bytes);
        if state.idle || state.buffer.len() >= WRITE_AT {
            // Once per idle period: the writer then stops being idle.
            state.idle = false;
            self.shared.to_writer.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Write` that tests read back (the log output of the tests here and in log_format).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn write_line(writer: &BatchedStderr, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_whole_and_in_order_and_the_guard_writes_the_rest() {
        let out = Captured::default();
        let (writer, guard) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        write_line(&writer, &format!("thread {t} line {i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let numbers: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(numbers, (0..5000).collect::<Vec<_>>(), "thread {t}");
        }
    }

    #[test]
    fn a_quiet_line_is_written_without_waiting_for_more() {
        let out = Captured::default();
        let (writer, _guard) = start(out.clone()).unwrap();
        write_line(&writer, "one line\n");
        let until = Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < until, "the line was not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*out.0.lock().unwrap(), b"one line\n");
    }
}
