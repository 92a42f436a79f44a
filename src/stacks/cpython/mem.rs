//! Reading many small pieces of the target's memory at once: one `process_vm_readv` carries
//! up to 1,024 of them (one level of every thread's frame chain, every code object of a
//! capture), where py-spy makes one call per struct. No ptrace, the target keeps running.

use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;
use std::io::IoSliceMut;

/// The kernel's limit of iovecs per call (UIO_MAXIOV).
const MAX_IOV: usize = 1024;

/// The memory of one process.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub pid: i32,
    /// `process_vm_readv` calls made (a cost figure for tests and benches).
    pub calls: u32,
}

impl Mem {
    pub fn new(pid: i32) -> Self {
        Self { pid, calls: 0 }
    }

    /// Read `len` bytes at each address; `None` where that piece is unreadable (a null or
    /// unmapped address). Pieces are independent: one bad address does not spoil the rest.
    pub fn read_many(&mut self, reqs: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = vec![None; reqs.len()];
        // Indices still to read, in order. A piece that fails ends the call's transfer
        // there, so the pieces after it are asked again in the next call.
        let mut todo: Vec<usize> = (0..reqs.len())
            .filter(|&i| reqs[i].0 != 0 && reqs[i].1 > 0)
            .collect();
        while !todo.is_empty() {
            let batch = &todo[..todo.len().min(MAX_IOV)];
            let remote: Vec<RemoteIoVec> = batch
                .iter()
                .map(|&i| RemoteIoVec {
                    base: reqs[i].0 as usize,
                    len: reqs[i].1,
                })
                .collect();
            // One local buffer for all pieces: the kernel fills it in order.
            let mut buf = vec![0u8; remote.iter().map(|r| r.len).sum()];
            self.calls += 1;
            let done = {
                let mut local = [IoSliceMut::new(&mut buf)];
                match process_vm_readv(Pid::from_raw(self.pid), &mut local, &remote) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EFAULT) => 0,
                    // Gone, or not ours to read: nothing more will succeed.
                    Err(_) => break,
                }
            };
            let (mut pos, mut consumed) = (0usize, batch.len());
            for (k, &i) in batch.iter().enumerate() {
                let len = reqs[i].1;
                if pos + len > done {
                    consumed = k + 1;
                    break;
                }
                out[i] = Some(buf[pos..pos + len].to_vec());
                pos += len;
            }
            todo.drain(..consumed);
        }
        out
    }

    /// One piece (see [`Mem::read_many`]).
    pub fn read(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.read_many(&[(addr, len)]).pop().flatten()
    }
}

/// Little-endian integers at an offset of a buffer read from the target (0 past its end:
/// callers read buffers sized for the fields they take).
pub fn u64_at(b: &[u8], off: u64) -> u64 {
    let off = off as usize;
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

pub fn u32_at(b: &[u8], off: u64) -> u32 {
    let off = off as usize;
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_isolates_a_bad_piece() {
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let b = [9u8; 16];
        let mut m = Mem::new(std::process::id() as i32);
        let got = m.read_many(&[
            (a.as_ptr() as u64, 8),
            (8, 8), // unmapped
            (0, 8), // null: not asked
            (b.as_ptr() as u64, 16),
        ]);
        assert_eq!(got[0].as_deref(), Some(&a[..]));
        assert_eq!(got[1], None);
        assert_eq!(got[2], None);
        assert_eq!(got[3].as_deref(), Some(&b[..]));
        assert_eq!(u64_at(&a, 0), u64::from_le_bytes(a));
        assert_eq!(u64_at(&a, 4), 0);
        assert_eq!(u32_at(&a, 4), u32::from_le_bytes([5, 6, 7, 8]));
    }
}
