//! One long-lived thread runs every capture. The caches (parsed ELF files, unwinders,
//! symbolizers, py-spy readers) are `!Send` and kept thread-local, so a fixed thread keeps
//! them warm whatever thread the caller is on (tokio's blocking pool, a test thread). It
//! also serialises captures: two snapshots never seize the same target at once, and the seize
//! helper's PR_SET_PDEATHSIG is tied to a thread that lives as long as the process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

static WORKER: OnceLock<Mutex<Option<Sender<Job>>>> = OnceLock::new();

fn spawn() -> Option<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new()
        .name("lt-stacks".into())
        .spawn(move || {
            for job in rx {
                // A panicking capture must not take the warm caches' thread down with it.
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })
        .ok()?;
    Some(tx)
}

/// Run `f` on the stacks thread and wait for it; `None` if it panicked. If the thread cannot
/// be started, `f` runs here (cold caches, same result).
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (rtx, rrx) = channel();
    let job: Job = Box::new(move || {
        let _ = rtx.send(f());
    });
    let slot = WORKER.get_or_init(|| Mutex::new(None));
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = spawn();
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
    rrx.recv().ok()
}
