//! The guest's clock under TCG.
//!
//! Under TCG the guest's TSC is the host's TSC (QEMU passes `rdtsc` through), but the guest
//! kernel cannot calibrate it on `-M microvm` (the calibration loops hang, see [`crate::design`]),
//! so the command line tells it a frequency (`tsc_early_khz=`). When that value is not the host's
//! real TSC rate, the guest clock runs fast or slow by the ratio (8.2 % fast with the old fixed
//! 2.4 GHz on a 2.6 GHz host). The host therefore measures its TSC rate once per host boot and
//! either puts it on the command line (plain boxes: not measured) or, for TEE boxes, whose
//! measured command line must not depend on the host's CPU, keeps [`FIXED_TSC_KHZ`] there and
//! sends the real rate with the workload so guest-init corrects the kernel's tick (adjtimex).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The TSC frequency on the measured command line of TEE boxes under TCG (any fixed value works;
/// guest-init corrects the clock within ±10 % of it, the range of adjtimex's tick).
pub const FIXED_TSC_KHZ: u64 = 2_400_000;

/// The cache file under the cache directory.
const CACHE_FILE: &str = "host-tsc.json";

/// How long the host samples its TSC: long enough for a 100 ppm estimate (the guest needs
/// 0.1 %), short enough not to be noticed on the first start after a host boot.
const SAMPLE: Duration = Duration::from_millis(25);

/// Cached host TSC rate, valid for one host boot.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    boot_id: String,
    khz: u64,
}

/// The host's TSC frequency in kHz, measured once per host boot and cached in `cache_dir`;
/// `None` when the host's TSC does not tick at a constant rate (the guest cannot be corrected).
pub fn host_tsc_khz(cache_dir: &Path) -> Option<u64> {
    let cpuinfo = read_small(Path::new("/proc/cpuinfo"), 1 << 20)?;
    if !constant_tsc(&cpuinfo) {
        return None;
    }
    let boot_id = read_small(Path::new("/proc/sys/kernel/random/boot_id"), 128)?
        .trim()
        .to_owned();
    let path = cache_dir.join(CACHE_FILE);
    if let Some(c) = read_small(&path, 4096).and_then(|s| serde_json::from_str::<Cached>(&s).ok()) {
        if c.boot_id == boot_id && plausible(c.khz) {
            return Some(c.khz);
        }
    }
    let khz = measure_tsc_khz(SAMPLE)?;
    if let Ok(json) = serde_json::to_vec(&Cached { boot_id, khz }) {
        // A cache that cannot be written only costs the next start another measurement.
        let _ = crate::assets::write_atomic(&path, &json);
    }
    Some(khz)
}

/// Whether `/proc/cpuinfo` says the TSC ticks at a constant rate whatever the CPU's frequency.
fn constant_tsc(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "constant_tsc"))
}

/// A TSC rate any real x86 host could have (100 MHz to 10 GHz).
fn plausible(khz: u64) -> bool {
    (100_000..=10_000_000).contains(&khz)
}

fn read_small(path: &Path, limit: u64) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Counts TSC ticks against the monotonic clock over `span`.
fn measure_tsc_khz(span: Duration) -> Option<u64> {
    let (t0, c0) = sample()?;
    std::thread::sleep(span);
    let (t1, c1) = sample()?;
    let nanos = t1.duration_since(t0).as_nanos();
    let ticks = u128::from(c1.checked_sub(c0)?);
    let khz = u64::try_from(ticks.checked_mul(1_000_000)? / nanos.max(1)).ok()?;
    plausible(khz).then_some(khz)
}

/// One (time, TSC) pair read back to back. A pair whose reads were split by a preemption (the
/// TSC moved more than [`PAIR_TICKS`] around the clock read) is taken again: on a loaded host
/// one preempted pair would skew the rate by milliseconds over the span.
fn sample() -> Option<(Instant, u64)> {
    (0..100).find_map(|_| {
        let before = rdtsc();
        let t = Instant::now();
        let after = rdtsc();
        let spread = after.checked_sub(before)?;
        (spread < PAIR_TICKS).then_some((t, before + spread / 2))
    })
}

/// At most about 20 µs between the two TSC reads of a pair (at up to 5 GHz).
pub const PAIR_TICKS: u64 = 100_000;

/// The time-stamp counter.
#[cfg(target_arch = "x86_64")]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86_64; it only reads the time-stamp counter.
    #[allow(unsafe_code, unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// The time-stamp counter (none on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub fn rdtsc() -> u64 {
    0
}

/// The correction guest-init applies when the kernel was told `assumed_khz` and the TSC really
/// ticks at `real_khz`: adjtimex's `tick` (µs per 1/100 s, 9000-11000) and `freq` (the rest, in
/// ppm scaled by 2^16, ±500 ppm). `None` when no correction is needed (within 1 ppm), or when
/// the two are too far apart to correct, with the clock's error as a ratio in the `Err`.
pub fn tick_correction(assumed_khz: u64, real_khz: u64) -> Result<Option<(i64, i64)>, f64> {
    if assumed_khz == 0 || real_khz == 0 {
        return Ok(None);
    }
    // The kernel's clock advances real/assumed times too fast; scale its second back.
    #[allow(clippy::cast_precision_loss)]
    let scale = assumed_khz as f64 / real_khz as f64;
    if (scale - 1.0).abs() < 1e-6 {
        return Ok(None);
    }
    let exact_tick = 10_000.0 * scale;
    let tick = exact_tick.round();
    if !(9_000.0..=11_000.0).contains(&tick) {
        return Err(1.0 / scale);
    }
    let ppm = (exact_tick - tick) / tick * 1e6;
    #[allow(clippy::cast_possible_truncation)]
    let (tick, freq) = (tick as i64, (ppm * 65_536.0).round() as i64);
    Ok(Some((tick, freq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_correction_slows_a_fast_clock_and_speeds_a_slow_one() {
        // 2.4 GHz assumed, 2.596 GHz real: the guest's second must shrink by 7.55 %.
        let (tick, freq) = tick_correction(2_400_000, 2_596_128).unwrap().unwrap();
        assert_eq!(tick, 9245);
        let exact = 10_000.0 * 2_400_000.0 / 2_596_128.0;
        let applied = f64::from(i32::try_from(tick).unwrap())
            * (1.0 + f64::from(i32::try_from(freq).unwrap()) / 65_536.0 / 1e6);
        assert!((applied - exact).abs() < 1e-3, "{applied} vs {exact}");
        let (tick, _) = tick_correction(2_400_000, 2_200_000).unwrap().unwrap();
        assert!(tick > 10_000);
    }

    #[test]
    fn equal_rates_need_no_correction() {
        assert_eq!(tick_correction(2_596_128, 2_596_128), Ok(None));
        assert_eq!(tick_correction(0, 2_596_128), Ok(None));
    }

    #[test]
    fn rates_beyond_ten_percent_cannot_be_corrected() {
        let err = tick_correction(2_400_000, 3_500_000).unwrap_err();
        assert!((err - 3.5 / 2.4).abs() < 1e-9);
    }

    #[test]
    fn constant_tsc_is_read_from_the_flags_line() {
        assert!(constant_tsc(
            "processor : 0\nflags : fpu tsc constant_tsc nonstop_tsc\n"
        ));
        assert!(!constant_tsc("flags : fpu tsc\n"));
        assert!(!constant_tsc(""));
    }

    #[test]
    fn the_host_rate_is_measured_then_cached() {
        let dir = tempfile::tempdir().unwrap();
        let Some(first) = host_tsc_khz(dir.path()) else {
            // No constant TSC on this host: nothing is cached either.
            assert!(!dir.path().join(CACHE_FILE).exists());
            return;
        };
        assert!(plausible(first));
        let cached: Cached =
            serde_json::from_slice(&std::fs::read(dir.path().join(CACHE_FILE)).unwrap()).unwrap();
        assert_eq!(cached.khz, first);
        assert_eq!(host_tsc_khz(dir.path()), Some(first));
        // A second measurement agrees with the first to well within the 0.1 % the guest needs.
        let again = measure_tsc_khz(SAMPLE).unwrap();
        let diff = again.abs_diff(first);
        assert!(diff * 10_000 < first, "{again} vs {first}");
    }
}
