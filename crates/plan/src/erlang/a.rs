//! Erlang A (Palm's M/M/n+M): callers wait in line but hang up after an exponentially
//! distributed patience.
//!
//! # The formulas
//! With `λ` arrivals, `μ = 1/aht`, `θ = 1/patience`, `n` lines, `x = nμ/θ` and `y = λ/θ`,
//! a caller who must wait finds `j` callers ahead with probability proportional to
//! `t_j = y^j / Π_{i=1..j}(x + i)`; their sum is Palm's `A(x, y)` (Mandelbaum & Zeltyn,
//! "The Palm/Erlang-A queue, with applications to call centers", 2005):
//! - `P(wait) = A·B / (1 + (A - 1)·B)` with `B` Erlang B of `n` lines and `λ/μ` erlangs;
//! - with `j` ahead the caller's offered wait `V` is a sum of exponentials of rates
//!   `nμ + iθ`, `i = 0..=j`, so it is answered with probability `x / (x + j + 1)` and
//!   `E[V; answered] = x·h_j / (θ(x + j + 1))`, `h_j = Σ_{i=1..j+1} 1/(x + i)`;
//! - `P(answered, V > t | wait) = e^{-(nμ+θ)t + y(1-u)} · x·A(x+1, yu) / ((x+1)·A(x, y))`
//!   with `u = e^{-θt}` (from `P(V > t | j) = I_u(x, j+1)`, a regularized incomplete
//!   beta, summed over `j`).
//!
//! # Numerics
//! No factorial and no power is ever formed. The series is summed outward from its
//! largest term (at `j* = ⌊y - x⌋`), with that term's logarithm taken from a
//! cancellation-free Stirling difference, and every sum is carried as (log of the scale,
//! sum relative to the scale). Each side stops when the rest of the series, bounded by a
//! geometric series (the term ratios only shrink), is below 1e-17 of the sum. So the
//! figures are exact to rounding for any number of lines and any load, with no overflow
//! and no NaN: at 10,000 lines the walk visits a few thousand terms.

use super::b::erlang_b_ln;
use super::special::{harmonic, ln_peak_term};

/// The tail of the series left out is below this share of its sum.
const TAIL: f64 = 1e-17;

/// A hard bound on the terms visited, so that even absurd inputs finish (about a tenth
/// of a second); realistic ones visit a few thousand.
const MAX_TERMS: u64 = 50_000_000;

/// What callers see with `n` lines under Erlang A.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErlangA {
    /// Share of callers who wait at all.
    pub p_wait: f64,
    /// Share of callers who hang up before they are answered.
    pub p_abandon: f64,
    /// Mean wait of answered callers, counting those answered at once (seconds).
    pub asa_s: f64,
    /// Mean time spent waiting over every caller, answered or not (seconds).
    pub mean_wait_s: f64,
    /// Share of all callers answered within the given time.
    pub service_level: f64,
    /// Share of line time busy with answered calls.
    pub occupancy: f64,
}

/// The series `Σ_j t_j` (and two weighted sums over the same terms), each equal to
/// `exp(ln_scale) · value`.
struct Series {
    ln_scale: f64,
    /// `Σ t_j`.
    sum: f64,
    /// `Σ t_j · (j+1)/(x+j+1)`: abandonment given `j` ahead.
    abandon: f64,
    /// `Σ t_j · x·h_j/(x+j+1)`: `θ·E[V; answered]` given `j` ahead.
    answered_wait: f64,
}

impl Series {
    /// `ln Σ t_j`, that is `ln A(x, z)`.
    fn ln_sum(&self) -> f64 {
        self.ln_scale + self.sum.ln()
    }
}

/// Sums the series `t_j = z^j / Π_{i=1..j}(x+i)` from its largest term outward.
fn series(x: f64, z: f64) -> Series {
    let peak = if z > x + 1.0 { (z - x).floor() } else { 0.0 };
    let ln_scale = if peak > 0.0 { ln_peak_term(x, z, peak) } else { 0.0 };
    let h_peak = harmonic(x, peak + 1.0);
    let w_abandon = |j: f64| (j + 1.0) / (x + j + 1.0);
    let w_wait = |j: f64, h: f64| x * h / (x + j + 1.0);
    let mut s = Series { ln_scale, sum: 1.0, abandon: w_abandon(peak), answered_wait: w_wait(peak, h_peak) };
    let mut visited: u64 = 1;
    // Upward: ratios z/(x+j+1) < 1 and shrinking.
    let (mut t, mut j, mut h) = (1.0f64, peak, h_peak);
    loop {
        let r = z / (x + j + 1.0);
        t *= r;
        j += 1.0;
        h += 1.0 / (x + j + 1.0);
        s.sum += t;
        s.abandon += t * w_abandon(j);
        s.answered_wait += t * w_wait(j, h);
        visited += 1;
        let next = z / (x + j + 1.0);
        if t == 0.0 || t * next / (1.0 - next) <= TAIL * s.sum || visited > MAX_TERMS {
            break;
        }
    }
    // Downward: ratios (x+j)/z <= 1 and shrinking.
    let (mut t, mut j, mut h) = (1.0f64, peak, h_peak);
    while j >= 1.0 && visited <= MAX_TERMS {
        t *= (x + j) / z;
        h -= 1.0 / (x + j + 1.0);
        j -= 1.0;
        s.sum += t;
        s.abandon += t * w_abandon(j);
        s.answered_wait += t * w_wait(j, h.max(0.0));
        visited += 1;
        let next = (x + j) / z;
        if t == 0.0 || (next < 1.0 && t * next / (1.0 - next) <= TAIL * s.sum) {
            break;
        }
    }
    s
}

/// Erlang A for `lines` lines, `erlangs` offered, mean call `aht_s` seconds, mean
/// patience `patience_s` seconds, service level counted within `within_s` seconds.
///
/// Inputs are expected finite and positive (the `Traffic` constructor checks them);
/// zero traffic gives an idle system.
pub fn erlang_a(lines: u32, erlangs: f64, aht_s: f64, patience_s: f64, within_s: f64) -> ErlangA {
    if lines == 0 {
        return ErlangA {
            p_wait: 1.0,
            p_abandon: 1.0,
            asa_s: 0.0,
            mean_wait_s: patience_s,
            service_level: 0.0,
            occupancy: 0.0,
        };
    }
    if erlangs.is_nan() || erlangs <= 0.0 {
        return ErlangA {
            p_wait: 0.0,
            p_abandon: 0.0,
            asa_s: 0.0,
            mean_wait_s: 0.0,
            service_level: 1.0,
            occupancy: 0.0,
        };
    }
    let n = f64::from(lines);
    let theta = 1.0 / patience_s;
    let mu = 1.0 / aht_s;
    let x = n * patience_s / aht_s;
    let y = erlangs * patience_s / aht_s;
    let main = series(x, y);
    let ln_a = main.ln_sum();
    let ln_b = erlang_b_ln(lines, erlangs);
    // P(wait) = AB / (1 + (A-1)B) = 1 / (1 + (1-B)/(AB)); exp(-inf) = 0 and
    // 1/(1+inf) = 0 keep the extremes exact.
    let b = ln_b.exp();
    let p_wait = 1.0 / (1.0 + (1.0 - b) * (-(ln_b + ln_a)).exp());
    let abandon_given_wait = main.abandon / main.sum;
    let p_abandon = p_wait * abandon_given_wait;
    let answered_wait_given_wait = main.answered_wait / main.sum / theta;
    let answered = 1.0 - p_abandon;
    let asa_s = if answered > 0.0 { p_wait * answered_wait_given_wait / answered } else { 0.0 };
    let mean_wait_s = p_abandon * patience_s;
    let late = if within_s > 0.0 {
        let u = (-theta * within_s).exp();
        let shifted = series(x + 1.0, y * u);
        let ln_late =
            -(n * mu + theta) * within_s - y * (-theta * within_s).exp_m1() + (x / (x + 1.0)).ln() + shifted.ln_sum()
                - ln_a;
        ln_late.exp()
    } else {
        1.0 - abandon_given_wait
    };
    let answered_in_time = (1.0 - abandon_given_wait - late).clamp(0.0, 1.0);
    ErlangA {
        p_wait,
        p_abandon,
        asa_s,
        mean_wait_s,
        service_level: ((1.0 - p_wait) + p_wait * answered_in_time).clamp(0.0, 1.0),
        occupancy: (erlangs * answered / n).min(1.0),
    }
}
