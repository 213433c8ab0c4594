//! Erlang C: the share of callers who wait, when every caller waits as long as it takes.

use super::b::{erlang_b, erlang_b_ln};

/// Erlang C, `C(lines, erlangs)`: the probability that a caller has to wait (M/M/n with an
/// unbounded waiting room and infinitely patient callers). `1` when the load reaches the
/// lines (`erlangs >= lines`): the line then grows without bound.
///
/// Taken from Erlang B as `C = B / (1 - ρ(1 - B))` with `ρ = erlangs / lines`, written
/// as `B / ((1 - ρ) + ρB)` so that no two nearly equal numbers are subtracted.
pub fn erlang_c(lines: u32, erlangs: f64) -> f64 {
    if erlangs.is_nan() || erlangs <= 0.0 {
        return if lines == 0 { 1.0 } else { 0.0 };
    }
    if erlangs >= f64::from(lines) {
        return 1.0;
    }
    erlang_c_from_b(lines, erlangs, erlang_b(lines, erlangs))
}

/// Erlang C from an Erlang B already computed for the same lines and load (stable
/// region only: `0 < erlangs < lines`).
pub(crate) fn erlang_c_from_b(lines: u32, erlangs: f64, b: f64) -> f64 {
    let rho = erlangs / f64::from(lines);
    b / ((1.0 - rho) + rho * b)
}

/// The natural logarithm of Erlang C, exact also where `C` underflows.
pub fn erlang_c_ln(lines: u32, erlangs: f64) -> f64 {
    if erlangs.is_nan() || erlangs <= 0.0 {
        return if lines == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if erlangs >= f64::from(lines) {
        return 0.0;
    }
    let ln_b = erlang_b_ln(lines, erlangs);
    let rho = erlangs / f64::from(lines);
    ln_b - ((1.0 - rho) + rho * ln_b.exp()).ln()
}
