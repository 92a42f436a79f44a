//! Test target for tests/stacks.rs: threads blocked forever in named `#[inline(never)]`
//! functions (mutex, condvar, sleep, pipe read), plus with `spin` a thread busy in user space,
//! and with `sigcount` a thread `sig_counter`, the only one with SIGUSR1 unblocked, whose
//! handler writes one `+` to stdout per delivery (so a test counts deliveries exactly).
//! Prints "ready" once all are spawned; dies with its parent (PR_SET_PDEATHSIG) so a failed
//! test never leaves it behind.

use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

#[inline(never)]
fn blocked_on_mutex(m: &Mutex<u32>) {
    let g = m.lock();
    black_box(&g);
}

#[inline(never)]
fn blocked_on_condvar(pair: &(Mutex<bool>, Condvar)) {
    let mut ready = pair.0.lock().unwrap_or_else(|p| p.into_inner());
    while !*ready {
        ready = pair.1.wait(ready).unwrap_or_else(|p| p.into_inner());
    }
    black_box(&ready);
}

#[inline(never)]
fn blocked_in_sleep() {
    thread::sleep(Duration::from_secs(100_000));
    black_box(());
}

#[inline(never)]
fn blocked_on_pipe_read(fd: i32) {
    let mut buf = [0u8; 16];
    // SAFETY: reading into a local buffer from a pipe we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    black_box(n);
}

/// Runs in user space forever (with `spin`): only the opt-in seize path can unwind it.
#[inline(never)]
fn busy_spinning() {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

extern "C" fn count_delivery(_sig: libc::c_int) {
    // SAFETY: write(2) of a static byte is async-signal-safe.
    unsafe { libc::write(1, b"+".as_ptr().cast(), 1) };
}

/// SIGUSR1 set, for sigprocmask.
fn sigusr1() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Waits in pause(2) for SIGUSR1 forever; every other thread blocks it, so a
/// process-directed SIGUSR1 always lands here.
#[inline(never)]
fn counting_signals() {
    // SAFETY: installing a handler that only calls write(2); unblocking in this thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_delivery as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let set = sigusr1();
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    loop {
        // SAFETY: pause has no arguments; it returns on each handled signal.
        unsafe { libc::pause() };
    }
}

#[inline(never)]
fn main_waits_forever(handles: Vec<thread::JoinHandle<()>>) {
    for h in handles {
        let _ = h.join();
    }
    black_box(());
}

fn main() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let sigcount = std::env::args().any(|a| a == "sigcount");
    if sigcount {
        // Blocked here, before any spawn, so every thread but `sig_counter` inherits it.
        let set = sigusr1();
        // SAFETY: pthread_sigmask with a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    }
    let mutex = Arc::new(Mutex::new(0u32));
    let held = mutex.lock().unwrap_or_else(|p| p.into_inner());
    std::mem::forget(held);
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two fds into the array; the write end stays open forever.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let read_fd = fds[0];
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("spawn")
    };
    let m = mutex.clone();
    let p = pair.clone();
    let handles = vec![
        spawn("mutex_waiter", Box::new(move || blocked_on_mutex(&m))),
        spawn("condvar_waiter", Box::new(move || blocked_on_condvar(&p))),
        spawn("sleeper", Box::new(blocked_in_sleep)),
        spawn(
            "pipe_reader",
            Box::new(move || blocked_on_pipe_read(read_fd)),
        ),
    ];
    let mut handles = handles;
    if std::env::args().any(|a| a == "spin") {
        handles.push(spawn("spinner", Box::new(busy_spinning)));
    }
    if sigcount {
        handles.push(spawn("sig_counter", Box::new(counting_signals)));
    }
    println!("ready");
    main_waits_forever(handles);
}
