//! Syscall number -> name, for the "current syscall" column (`/proc/TID/syscall` gives only
//! the number). Tables for x86_64 and aarch64 are generated from the kernel UAPI headers;
//! [`name`] uses the table of the architecture lifecycle-top was built for, which is the
//! architecture of the processes it watches (no 32-bit compat syscalls are decoded).

mod aarch64;
mod x86_64;

/// An architecture with a syscall table here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture of this build, if it has a table.
    pub const fn current() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }
}

/// Name of syscall `nr` on this build's architecture (`None` if unknown or negative).
pub fn name(nr: i64) -> Option<&'static str> {
    name_for(Arch::current()?, nr)
}

/// Name of syscall `nr` on `arch`.
pub fn name_for(arch: Arch, nr: i64) -> Option<&'static str> {
    let table: &[&'static str] = match arch {
        Arch::X86_64 => &x86_64::NAMES,
        Arch::Aarch64 => &aarch64::NAMES,
    };
    let idx = usize::try_from(nr).ok()?;
    table.get(idx).copied().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_names() {
        assert_eq!(name_for(Arch::X86_64, 0), Some("read"));
        assert_eq!(name_for(Arch::X86_64, 7), Some("poll"));
        assert_eq!(name_for(Arch::X86_64, 61), Some("wait4"));
        assert_eq!(name_for(Arch::X86_64, 202), Some("futex"));
        assert_eq!(name_for(Arch::X86_64, 230), Some("clock_nanosleep"));
        assert_eq!(name_for(Arch::X86_64, 434), Some("pidfd_open"));
        assert_eq!(name_for(Arch::X86_64, -1), None);
        assert_eq!(name_for(Arch::X86_64, 100_000), None);
    }

    #[test]
    fn aarch64_names() {
        assert_eq!(name_for(Arch::Aarch64, 63), Some("read"));
        assert_eq!(name_for(Arch::Aarch64, 73), Some("ppoll"));
        assert_eq!(name_for(Arch::Aarch64, 98), Some("futex"));
        assert_eq!(name_for(Arch::Aarch64, 101), Some("nanosleep"));
        assert_eq!(name_for(Arch::Aarch64, 260), Some("wait4"));
        assert_eq!(name_for(Arch::Aarch64, 434), Some("pidfd_open"));
        // 244..=259 are reserved for arch-specific calls on the generic table.
        assert_eq!(name_for(Arch::Aarch64, 250), None);
    }

    #[test]
    fn current_arch_has_a_table() {
        assert!(name(0).is_some(), "no syscall table for this architecture");
    }
}
