//! Registry of lifecycle-top's own helper processes (the stack-capture seize helper, short
//! commands such as `python3 -c ...`), so the launch-mode collector can tell them apart from
//! orphans of the launched tree.
//!
//! In launch mode lifecycle-top is a child subreaper and the collector adopts every process
//! whose parent is lifecycle-top (a daemon that called `setsid()` and was orphaned before any
//! refresh saw it is otherwise lost), and reaps it when it exits. A helper adopted that way
//! would be listed as an orphan of the target and its exit status stolen from whoever waits
//! for it. Hence the rule: **any code that forks a child while lifecycle-top may be a
//! subreaper registers it**, before a refresh can see it, and unregisters it once reaped.
//!
//! - A raw `fork()`: `let f = helpers::forking(); let pid = fork(); if pid > 0 { f.register(pid) }`
//!   then, after `waitpid`, `helpers::unregister(pid)`. The registry stays locked from before
//!   the fork until `register`, so no refresh ever sees the child unregistered. The forked
//!   child must not touch the registry (its copy of the lock is held).
//! - A `std::process::Command`: [`spawn`] (then [`unregister`] after `wait`) or [`output`].
//!
//! Children in lifecycle-top's own process group are never adopted either (a `Command` or a
//! `fork` inherits it; the launched tree starts in a group of its own), so the registry is
//! what protects helpers that leave the group; registering every helper keeps this true
//! whatever they do.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// pid -> registrations: counted, so that a late `unregister` of a reaped helper whose pid
/// was already reused by a newer helper leaves the newer one registered.
type Registry = Option<HashMap<i32, u32>>;

static HELPERS: Mutex<Registry> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Registry> {
    HELPERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn add(reg: &mut Registry, pid: i32) {
    *reg.get_or_insert_with(HashMap::new).entry(pid).or_insert(0) += 1;
}

/// Mark `pid` (a child of lifecycle-top) as a helper: never adopted, never reaped by the
/// collector. Prefer [`forking`] or [`spawn`], which leave no window before registration.
pub fn register(pid: i32) {
    add(&mut lock(), pid);
}

/// Forget `pid`; call it right after the helper was reaped (its pid may be reused).
pub fn unregister(pid: i32) {
    if let Some(map) = lock().as_mut()
        && let Some(n) = map.get_mut(&pid)
    {
        *n -= 1;
        if *n == 0 {
            map.remove(&pid);
        }
    }
}

/// Is `pid` a registered helper? Waits while a helper is being forked (see [`forking`]).
pub fn is_helper(pid: i32) -> bool {
    lock().as_ref().is_some_and(|m| m.contains_key(&pid))
}

/// The registry, locked for the duration of one fork: the collector's [`is_helper`] waits
/// until [`Forking::register`] (or drop, when the fork failed).
#[must_use = "fork while holding it, then call register(pid)"]
pub struct Forking(MutexGuard<'static, Registry>);

/// Lock the registry before forking a helper.
pub fn forking() -> Forking {
    Forking(lock())
}

impl Forking {
    /// Register the forked helper and unlock.
    pub fn register(mut self, pid: i32) {
        add(&mut self.0, pid);
    }
}

/// `cmd.spawn()`, registered as a helper with no window. Call [`unregister`] with its pid
/// after waiting for it.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let f = forking();
    let child = cmd.spawn()?;
    f.register(child.id() as i32);
    Ok(child)
}

/// Like `cmd.output()` (stdin null, stdout and stderr captured), run as a registered helper.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    let child = spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let pid = child.id() as i32;
    let out = child.wait_with_output();
    unregister(pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_unregister() {
        // Pids no process of this test run can have (above any pid_max).
        assert!(!is_helper(1 << 30));
        register(1 << 30);
        forking().register((1 << 30) + 1);
        assert!(is_helper(1 << 30) && is_helper((1 << 30) + 1));
        unregister(1 << 30);
        unregister((1 << 30) + 1);
        assert!(!is_helper(1 << 30) && !is_helper((1 << 30) + 1));
        drop(forking()); // a failed fork: nothing registered, lock released
        assert!(!is_helper(1 << 30));
        // A reused pid registered twice stays registered until both are unregistered.
        register(1 << 30);
        register(1 << 30);
        unregister(1 << 30);
        assert!(is_helper(1 << 30));
        unregister(1 << 30);
        assert!(!is_helper(1 << 30));
    }
}
