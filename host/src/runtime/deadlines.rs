//! A call's deadlines: the epoch deadline with a grace for a guest thread
//! kept off the CPU, and how a trap is told apart from a timeout.
//!
//! Knows nothing about the plugin's exports or capabilities.

use super::*;

pub(super) fn classify_trap(e: wasmtime::Error, timeout: Duration) -> CallError {
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return CallError::Timeout(timeout);
    }
    CallError::Trap(format!("{e:#}"))
}

/// Whether a call whose budget ran out in wall-clock time really used it.
/// The epoch counts wall time, and a busy machine can keep the guest's
/// thread off the CPU for longer than the whole budget (seen in CI: a
/// one-shot CLI quote among a dozen processes compiling at once). So the
/// first time the budget runs out the call gets a grace of half the budget,
/// and it traps at the end of a grace during which its thread ran on the
/// CPU for at least half of it: a guest that loops is stopped at 1.5× the
/// budget, one that was merely waiting for a CPU goes on. Graces are
/// capped, and the wall-clock timeout of the whole call still applies.
pub(super) struct Overrun {
    grace: Duration,
    /// The thread and its CPU time when the current grace began.
    grace_began: Option<(std::thread::ThreadId, Duration)>,
    graces: u32,
}

/// Graces one call may get (with the default 50 ms budget: a second).
pub(super) const MAX_GRACES: u32 = 40;

impl Overrun {
    pub(super) fn new(budget: Duration) -> Overrun {
        Overrun {
            grace: (budget / 2).max(TICK),
            grace_began: None,
            graces: 0,
        }
    }

    /// Epoch ticks to go on for, or `None` to trap.
    pub(super) fn grace(&mut self) -> Option<u64> {
        let now = (std::thread::current().id(), thread_cpu_time()?);
        if let Some((thread, cpu)) = self.grace_began {
            // On another thread (the call went through an await), the CPU
            // figure says nothing: count the grace as used.
            if thread != now.0 || now.1.saturating_sub(cpu) >= self.grace / 2 {
                return None;
            }
        }
        if self.graces == MAX_GRACES {
            return None;
        }
        self.graces += 1;
        self.grace_began = Some(now);
        Some(ticks(self.grace))
    }
}

/// CPU time used so far by the calling thread.
#[cfg(unix)]
pub(super) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Without a per-thread CPU clock, the wall-clock budget is final.
#[cfg(not(unix))]
pub(super) fn thread_cpu_time() -> Option<Duration> {
    None
}
