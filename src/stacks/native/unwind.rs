//! Copying a thread's stack out of the target (process_vm_readv, no ptrace) and unwinding it
//! with framehop. Registers: x86_64 needs rip, rsp, rbp; /proc/TID/syscall gives only rip and
//! rsp, so rbp is first taken as unknown and, if a frame-pointer frame stops the walk early,
//! guessed from the stack (a slot pointing higher in the stack followed by a code address).

use super::modules::Bytes;
use framehop::Unwinder;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;
use std::io::IoSliceMut;

/// How much stack to copy in one read; enough for typical blocked threads, and more is read
/// on demand up to `MAX_STACK`.
const FIRST_READ: usize = 8 * 1024;
const MAX_STACK: usize = 1024 * 1024;

/// Bytes of a thread's stack from `base` (its sp) upward, bounded by its mapping's end.
pub struct StackCopy {
    pid: i32,
    base: u64,
    limit: u64,
    bytes: Vec<u8>,
    /// A read failed: stop growing (the walk reports a truncated stack).
    failed: bool,
}

impl StackCopy {
    /// Copy the first chunk above `sp`; `limit` is the end of the mapping holding sp.
    pub fn read(pid: i32, sp: u64, limit: u64) -> Result<Self, String> {
        let mut s = Self {
            pid,
            base: sp,
            limit: limit.min(sp.saturating_add(MAX_STACK as u64)),
            bytes: Vec::new(),
            failed: false,
        };
        s.grow_to(FIRST_READ.min(s.limit.saturating_sub(sp) as usize))?;
        Ok(s)
    }

    fn grow_to(&mut self, len: usize) -> Result<(), String> {
        let have = self.bytes.len();
        if len <= have {
            return Ok(());
        }
        self.bytes.resize(len, 0);
        let remote = [RemoteIoVec {
            base: (self.base as usize) + have,
            len: len - have,
        }];
        let mut local = [IoSliceMut::new(&mut self.bytes[have..])];
        match process_vm_readv(Pid::from_raw(self.pid), &mut local, &remote) {
            Ok(n) => {
                self.bytes.truncate(have + n);
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(have);
                self.failed = true;
                Err(format!(
                    "process_vm_readv of the stack failed: {e} (run as the target's user or root)"
                ))
            }
        }
    }

    /// A copy made elsewhere (the seize helper): never grows, the target has moved on.
    pub fn from_bytes(sp: u64, bytes: Vec<u8>) -> Self {
        let limit = sp + bytes.len() as u64;
        Self {
            pid: 0,
            base: sp,
            limit,
            bytes,
            failed: true,
        }
    }

    /// A stack word; grows the copy (doubling) when the walk goes past what was read.
    #[allow(clippy::result_unit_err)] // framehop's read_stack callback signature
    pub fn word(&mut self, addr: u64) -> Result<u64, ()> {
        let off = addr.checked_sub(self.base).ok_or(())? as usize;
        if off + 8 > self.bytes.len() {
            if self.failed || addr + 8 > self.limit {
                return Err(());
            }
            let want = (off + 8)
                .max(self.bytes.len() * 2)
                .min((self.limit - self.base) as usize);
            self.grow_to(want).map_err(|_| ())?;
        }
        let b = self.bytes.get(off..off + 8).ok_or(())?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn copied_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Result of a walk: instruction addresses for symbol lookup (return address - 1 for callers).
#[derive(Debug, Default)]
pub struct Walk {
    pub lookup_addrs: Vec<u64>,
    /// Why the walk stopped early, if it did not reach the stack's end.
    pub truncated: Option<String>,
}

#[cfg(target_arch = "x86_64")]
pub type NativeUnwinder = framehop::x86_64::UnwinderX86_64<Bytes>;
#[cfg(target_arch = "x86_64")]
pub type NativeCache = framehop::x86_64::CacheX86_64;

/// Walk from (pc, sp, bp).
#[cfg(target_arch = "x86_64")]
pub fn walk(
    unwinder: &NativeUnwinder,
    cache: &mut NativeCache,
    stack: &mut StackCopy,
    pc: u64,
    sp: u64,
    bp: u64,
) -> Walk {
    let regs = framehop::x86_64::UnwindRegsX86_64::new(pc, sp, bp);
    let mut read = |addr: u64| stack.word(addr);
    let mut iter = unwinder.iter_frames(pc, regs, cache, &mut read);
    let mut out = Walk::default();
    loop {
        match iter.next() {
            Ok(Some(f)) => {
                out.lookup_addrs.push(f.address_for_lookup());
                if out.lookup_addrs.len() >= 256 {
                    out.truncated = Some("more than 256 frames".into());
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                out.truncated = Some(format!("unwinding stopped: {e}"));
                break;
            }
        }
    }
    out
}

/// Candidate frame pointers: stack slots s (8-aligned, above sp) whose next word is a return
/// address into an executable mapping (a frame record is [saved rbp, return address]). The
/// saved rbp itself is not checked: a caller without frame pointers may use rbp for anything.
pub fn bp_candidates(
    stack: &mut StackCopy,
    from: u64,
    is_code: &dyn Fn(u64) -> bool,
    max: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    let end = stack.base() + stack.copied_len() as u64;
    let mut s = from.max(stack.base());
    while s + 16 <= end && out.len() < max {
        if stack.word(s + 8).is_ok_and(is_code) {
            out.push(s);
        }
        s += 8;
    }
    out
}

/// An rbp no unwind rule can use: a frame-pointer rule computes rbp + 16, which overflows,
/// so a walk that needs rbp fails instead of ending.
const UNUSABLE_BP: u64 = u64::MAX - 15;

/// Walk with rbp unknown and with up to 12 guessed rbp values; keep the best walk: every
/// address in code beats one with garbage, then reaching the end of the stack cleanly beats
/// a truncated walk, then more frames win. rbp=0 alone often "ends" cleanly at the first
/// frame-pointer frame, so guesses are tried unless a walk from an unusable rbp already ends
/// cleanly in code: that walk never read rbp (every frame's rule restored it or did without),
/// so rbp=0 and every guess give the same frames, and the up to 37 walks of the search would
/// only repeat it (most of a cold capture's unwinding, for code built without frame pointers
/// such as CPython's and glibc's).
#[cfg(target_arch = "x86_64")]
pub fn walk_guessing_bp(
    unwinder: &NativeUnwinder,
    cache: &mut NativeCache,
    stack: &mut StackCopy,
    pc: u64,
    sp: u64,
    is_code: &dyn Fn(u64) -> bool,
) -> Walk {
    let score = |w: &Walk| {
        let all_code = w.lookup_addrs.iter().all(|a| is_code(*a));
        (all_code, w.truncated.is_none(), w.lookup_addrs.len())
    };
    let without_bp = walk(unwinder, cache, stack, pc, sp, UNUSABLE_BP);
    if let (true, true, _) = score(&without_bp) {
        return without_bp;
    }
    let mut best = walk(unwinder, cache, stack, pc, sp, 0);
    let mut best_score = score(&best);
    // Round 1 guesses from sp; later rounds from the slot holding the last return address
    // found, since the frame-pointer frame that stopped the walk lies above it.
    let mut from = sp;
    for _round in 0..3 {
        for bp in bp_candidates(stack, from, is_code, 12) {
            let w = walk(unwinder, cache, stack, pc, sp, bp);
            let sc = score(&w);
            if sc > best_score {
                best = w;
                best_score = sc;
            }
        }
        let Some(next) = best.lookup_addrs.last().and_then(|a| slot_of(stack, a + 1)) else {
            break;
        };
        if next <= from {
            break;
        }
        from = next;
    }
    best
}

/// The first stack slot holding `value` (a return address), if any in the copy.
fn slot_of(stack: &mut StackCopy, value: u64) -> Option<u64> {
    let end = stack.base() + stack.copied_len() as u64;
    let mut s = stack.base();
    while s + 8 <= end {
        if stack.word(s) == Ok(value) {
            return Some(s);
        }
        s += 8;
    }
    None
}
