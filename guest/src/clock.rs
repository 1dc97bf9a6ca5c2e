//! The guest's clock: set from the host's, and its rate corrected under TCG.
//!
//! Under TCG the kernel is told a TSC rate on the command line (it cannot calibrate on
//! `-M microvm`); a TEE box's measured command line carries a fixed rate, so its clock runs fast
//! or slow by the ratio to the host's real TSC rate. The host sends that rate with the workload;
//! guest-init measures the rate the kernel assumed (TSC ticks against `CLOCK_MONOTONIC_RAW`,
//! which the kernel derives from the TSC at its assumed rate) and scales the kernel's tick with
//! adjtimex, which `CLOCK_REALTIME`, `CLOCK_MONOTONIC` and timers follow.

use std::sync::OnceLock;
use std::time::Duration;

use a3s_vmm::clock::{rdtsc, tick_correction, PAIR_TICKS};
use a3s_vmm::proto::GuestClock;
use anyhow::Context;
use nix::time::{clock_gettime, clock_settime, ClockId};

/// The (raw nanoseconds, TSC) pair taken when guest-init started.
static BASELINE: OnceLock<Option<(u128, u64)>> = OnceLock::new();

/// The shortest span the kernel's assumed rate is measured over (100 ppm at the pair spread).
const MIN_SPAN_NANOS: u128 = 200_000_000;

/// Remembers the starting point for measuring the kernel's assumed TSC rate (call early).
pub(crate) fn mark_start() {
    BASELINE.get_or_init(sample);
}

/// Sets the wall clock to the host's and corrects the clock's rate; returns a warning when
/// the rate is too far off to correct.
pub(crate) fn apply(clock: &GuestClock) -> anyhow::Result<Option<String>> {
    let secs = i64::try_from(clock.unix_nanos / 1_000_000_000).context("host time")?;
    let nanos = i64::try_from(clock.unix_nanos % 1_000_000_000).context("host time")?;
    clock_settime(
        ClockId::CLOCK_REALTIME,
        nix::sys::time::TimeSpec::new(secs, nanos),
    )
    .context("setting the clock")?;
    let Some(real_khz) = clock.tsc_khz else {
        return Ok(None);
    };
    let Some(assumed_khz) = assumed_tsc_khz() else {
        return Ok(Some(
            "guest clock: the kernel's TSC rate could not be measured; the clock is not corrected"
                .into(),
        ));
    };
    match tick_correction(assumed_khz, real_khz) {
        Ok(None) => Ok(None),
        Ok(Some((tick, freq))) => {
            set_tick(tick, freq)?;
            Ok(None)
        }
        Err(ratio) => Ok(Some(format!(
            "guest clock: the kernel assumes a {assumed_khz} kHz TSC and the host's ticks at \
             {real_khz} kHz, beyond the ±10 % adjtimex can correct: the clock runs {:.1} % off",
            (ratio - 1.0) * 100.0
        ))),
    }
}

/// The TSC rate the kernel assumed, from the baseline to now.
fn assumed_tsc_khz() -> Option<u64> {
    let (n0, c0) = (*BASELINE.get_or_init(sample))?;
    let mut now = sample()?;
    let span = now.0.checked_sub(n0)?;
    if span < MIN_SPAN_NANOS {
        let wait = u64::try_from(MIN_SPAN_NANOS - span).ok()?;
        std::thread::sleep(Duration::from_nanos(wait));
        now = sample()?;
    }
    let (n1, c1) = now;
    let ticks = u128::from(c1.checked_sub(c0)?);
    u64::try_from(ticks * 1_000_000 / n1.checked_sub(n0)?.max(1)).ok()
}

/// One (raw nanoseconds, TSC) pair read back to back, retried when the vCPU was descheduled
/// between the reads (the TSC keeps counting on the host meanwhile).
fn sample() -> Option<(u128, u64)> {
    (0..100).find_map(|_| {
        let before = rdtsc();
        let raw = clock_gettime(ClockId::CLOCK_MONOTONIC_RAW).ok()?;
        let after = rdtsc();
        let spread = after.checked_sub(before)?;
        let nanos = u128::try_from(raw.tv_sec()).ok()? * 1_000_000_000
            + u128::try_from(raw.tv_nsec()).ok()?;
        (spread < PAIR_TICKS).then_some((nanos, before + spread / 2))
    })
}

#[allow(unsafe_code)]
fn set_tick(tick: i64, freq: i64) -> anyhow::Result<()> {
    // SAFETY: `timex` is plain data (all-zero is valid), and adjtimex only reads and writes the
    // struct we pass for the duration of the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK | libc::ADJ_FREQUENCY;
    tx.tick = tick;
    tx.freq = freq;
    // SAFETY: see above; `tx` is a valid, exclusively borrowed timex.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("adjtimex");
    }
    Ok(())
}
