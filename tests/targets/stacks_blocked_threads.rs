//! Test target for tests/stacks.rs: threads blocked forever in named `#[inline(never)]`
//! functions (mutex, condvar, sleep, pipe read), plus with `spin` a thread busy in user space. Prints "ready" once all are spawned; dies
//! with its parent (PR_SET_PDEATHSIG) so a failed test never leaves it behind.

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
    println!("ready");
    main_waits_forever(handles);
}
