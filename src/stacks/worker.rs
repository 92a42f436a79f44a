//! Two long-lived threads run every capture: `lt-stacks` the kernel and native sources,
//! `lt-pyspy` the Python one read without an agent, so a capture reads both at once (the
//! py-spy read costs about as much as the rest together: cold, in parallel, it no longer adds
//! to the wall time). The caches (parsed ELF files, unwinders, symbolizers, py-spy readers)
//! are `!Send` and kept thread-local, so a fixed thread keeps them warm whatever thread the
//! caller is on (tokio's blocking pool, a test thread). `lt-stacks` also serialises captures:
//! two snapshots never seize the same target at once, and the seize helper's
//! PR_SET_PDEATHSIG is tied to a thread that lives as long as the process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// One named thread fed by a channel, started on first use.
pub struct Worker {
    name: &'static str,
    tx: OnceLock<Mutex<Option<Sender<Job>>>>,
}

/// Kernel and native sources (and the seize helper).
pub static STACKS: Worker = Worker::new("lt-stacks");
/// py-spy reads of CPython processes.
pub static PYSPY: Worker = Worker::new("lt-pyspy");

impl Worker {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            tx: OnceLock::new(),
        }
    }

    fn spawn(&self) -> Option<Sender<Job>> {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                for job in rx {
                    // A panicking capture must not take the warm caches' thread down with it.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .ok()?;
        Some(tx)
    }

    /// Start `f` on this worker; its result arrives on the receiver (closed without a value
    /// if it panicked). If the thread cannot be started, `f` runs here (cold caches, same
    /// result).
    pub fn submit<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
        let (rtx, rrx) = channel();
        let job: Job = Box::new(move || {
            let _ = rtx.send(f());
        });
        let slot = self.tx.get_or_init(|| Mutex::new(None));
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = self.spawn();
        }
        let job = match guard.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => None,
                Err(e) => {
                    *guard = None;
                    Some(e.0)
                }
            },
            None => Some(job),
        };
        drop(guard);
        if let Some(job) = job {
            job();
        }
        rrx
    }

    /// Run `f` on this worker and wait for it; `None` if it panicked.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        self.submit(f).recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_named_thread_and_a_panic_is_none() {
        let name = PYSPY.run(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.flatten().as_deref(), Some("lt-pyspy"));
        assert_eq!(PYSPY.run(|| -> i32 { panic!("boom") }), None);
        // The thread survived the panic.
        assert_eq!(PYSPY.run(|| 7), Some(7));
    }
}
