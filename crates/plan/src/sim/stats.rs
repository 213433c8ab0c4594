//! Collectors: wait-time histograms and time-weighted gauges (lines in use, callers
//! waiting) with their time series for the chart.

/// Waits below this many milliseconds are counted exactly; above, in buckets 1/1024 of
/// a power of two wide (0.1 % relative), so a p95 is exact to a millisecond or 0.1 %.
const EXACT_MS: u64 = 2048;
const SUB_BITS: u32 = 10;

/// A histogram of waits in milliseconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl WaitHistogram {
    fn index(ms: u64) -> usize {
        if ms < EXACT_MS {
            return ms as usize;
        }
        let e = 63 - ms.leading_zeros(); // floor(log2 ms) >= 11
        let shift = e - SUB_BITS;
        EXACT_MS as usize + ((e - 11) as usize) * (1 << SUB_BITS) + ((ms >> shift) as usize - (1 << SUB_BITS))
    }

    /// The smallest value of bucket `i`.
    fn lower(i: usize) -> u64 {
        if i < EXACT_MS as usize {
            return i as u64;
        }
        let k = i - EXACT_MS as usize;
        let e = 11 + (k >> SUB_BITS) as u32;
        let mantissa = (1u64 << SUB_BITS) + (k & ((1 << SUB_BITS) - 1)) as u64;
        mantissa << (e - SUB_BITS)
    }

    pub(crate) fn record(&mut self, ms: u64) {
        let i = Self::index(ms);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0..=1) in milliseconds: the lower edge of the bucket holding it
    /// (exact below 2,048 ms).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower(i);
            }
        }
        Self::lower(self.counts.len().saturating_sub(1))
    }
}

/// A level over time (lines in use in a pool, callers waiting in a flow): its area and
/// peak inside the measured window, and per chart bucket.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gauge {
    pub(crate) level: i64,
    last: u64,
    /// ∫ level dt over the window (level·ms).
    pub(crate) area: f64,
    /// The highest level seen inside the window.
    pub(crate) peak: i64,
    /// ∫ level dt per chart bucket.
    pub(crate) series_area: Vec<f64>,
    /// The highest level per chart bucket.
    pub(crate) series_peak: Vec<i64>,
    /// Time (ms) spent at each level inside the window, by level (index 0 unused): as long
    /// as the highest level reached (a pool never goes over its limit). A level never
    /// held inside the window has 0.
    pub(crate) time_at: Vec<f64>,
    /// The chart bucket last looked up: `[start, end)` and its index. The next change
    /// nearly always falls in the same bucket, and a division costs dozens of cycles.
    bucket: (u64, u64, usize),
}

/// The measured window `[start, end)` and the chart's bucket width.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) bucket_ms: u64,
}

impl Gauge {
    /// The chart bucket of `t`: `t / w.bucket_ms`.
    fn bucket(&mut self, t: u64, w: &Window) -> usize {
        let (start, end, b) = self.bucket;
        if start <= t && t < end {
            return b;
        }
        let b = t / w.bucket_ms;
        let start = b * w.bucket_ms;
        self.bucket = (start, start.saturating_add(w.bucket_ms), b as usize);
        b as usize
    }

    /// Carries the current level forward to `t`.
    pub(crate) fn advance(&mut self, t: u64, w: &Window) {
        if t <= self.last {
            return;
        }
        let (from, level) = (self.last, self.level);
        self.last = t;
        let (lo, hi) = (from.max(w.start), t.min(w.end));
        if hi > lo {
            self.area += level as f64 * (hi - lo) as f64;
            self.peak = self.peak.max(level);
            if level > 0 {
                let l = level as usize;
                if self.time_at.len() <= l {
                    self.time_at.resize(l + 1, 0.0);
                }
                self.time_at[l] += (hi - lo) as f64;
            }
        }
        let first = self.bucket(from, w);
        let last = self.bucket(t - 1, w);
        if self.series_area.len() <= last {
            self.series_area.resize(last + 1, 0.0);
            self.series_peak.resize(last + 1, 0);
        }
        if level == 0 {
            return;
        }
        if first == last {
            // Within one bucket (nearly always): the loop below, once, without its bounds.
            self.series_area[first] += level as f64 * (t - from) as f64;
            self.series_peak[first] = self.series_peak[first].max(level);
            return;
        }
        for b in first..=last {
            let b_lo = (b as u64 * w.bucket_ms).max(from);
            let b_hi = ((b as u64 + 1) * w.bucket_ms).min(t);
            self.series_area[b] += level as f64 * (b_hi - b_lo) as f64;
            self.series_peak[b] = self.series_peak[b].max(level);
        }
    }

    /// The level changes by `delta` at `t`.
    pub(crate) fn add(&mut self, t: u64, delta: i64, w: &Window) {
        self.advance(t, w);
        self.level += delta;
        if (w.start..w.end).contains(&t) {
            self.peak = self.peak.max(self.level);
        }
        let b = self.bucket(t, w);
        if self.series_peak.len() <= b {
            self.series_area.resize(b + 1, 0.0);
            self.series_peak.resize(b + 1, 0);
        }
        self.series_peak[b] = self.series_peak[b].max(self.level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_for_short_waits_and_close_for_long_ones() {
        let mut h = WaitHistogram::default();
        for ms in 0..1000 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.95), 949);
        let mut h = WaitHistogram::default();
        for s in 1..=100u64 {
            h.record(s * 1_000_000);
        }
        let p95 = h.quantile(0.95) as f64;
        assert!((p95 - 95e6).abs() <= 95e6 * 0.001, "{p95}");
        for ms in [0u64, 1, 2047, 2048, 3000, 1 << 20, 2_592_000_000] {
            let i = WaitHistogram::index(ms);
            assert!(WaitHistogram::lower(i) <= ms && ms - WaitHistogram::lower(i) <= ms / 1000 + 1);
        }
    }

    #[test]
    fn a_gauge_integrates_its_level_inside_the_window() {
        let w = Window { start: 1_000, end: 5_000, bucket_ms: 1_000 };
        let mut g = Gauge::default();
        g.add(0, 2, &w); // 2 from 0 to 3,000
        g.add(3_000, 1, &w); // 3 from 3,000 to 6,000
        g.advance(6_000, &w);
        // Window: 2 × 2,000 + 3 × 2,000.
        assert_eq!(g.area, 10_000.0);
        assert_eq!(g.peak, 3);
        assert_eq!(g.series_area, vec![2_000.0, 2_000.0, 2_000.0, 3_000.0, 3_000.0, 3_000.0]);
    }
}
