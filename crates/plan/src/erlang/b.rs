//! Erlang B: the share of callers who hear busy when there is no waiting room.

/// Below this value the plain recursion would lose digits to subnormal numbers, so
/// [`erlang_b_ln`] continues in logarithms.
const LOG_SWITCH: f64 = 1e-250;

/// Erlang B, `B(lines, erlangs)`: the probability that a caller finds every line busy
/// (M/M/n/n, and by insensitivity M/G/n/n) when `erlangs` of traffic is offered.
///
/// Computed by the recursion `B(0) = 1`, `B(k) = a·B(k-1) / (k + a·B(k-1))`: every
/// intermediate value lies in `[0, 1]`, so nothing overflows for any number of lines and
/// any load, and the cost is one division per line (10,000 lines take microseconds).
/// Values below about 1e-308 underflow to 0; [`erlang_b_ln`] keeps them.
pub fn erlang_b(lines: u32, erlangs: f64) -> f64 {
    if erlangs <= 0.0 || erlangs.is_nan() {
        return if lines == 0 { 1.0 } else { 0.0 };
    }
    let mut b = 1.0;
    for k in 1..=lines {
        let ab = erlangs * b;
        b = ab / (f64::from(k) + ab);
    }
    b
}

/// The natural logarithm of Erlang B, exact also where `B` itself underflows (e.g.
/// `ln B(10000, 200) ≈ -29325.75`). `-inf` for zero traffic.
///
/// Runs the recursion of [`erlang_b`] while `B` is representable, then carries on with
/// `L = ln(1/B)`: `L(k) = ln(k/a) + L(k-1) + ln(1 + a/(k·e^{L(k-1)}))`.
pub fn erlang_b_ln(lines: u32, erlangs: f64) -> f64 {
    if erlangs <= 0.0 || erlangs.is_nan() {
        return if lines == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let mut b = 1.0;
    let mut k = 1;
    while k <= lines {
        let ab = erlangs * b;
        b = ab / (f64::from(k) + ab);
        k += 1;
        if b < LOG_SWITCH {
            break;
        }
    }
    let mut l = -b.ln();
    while k <= lines {
        let kf = f64::from(k);
        l += (kf / erlangs).ln() + (erlangs / kf * (-l).exp()).ln_1p();
        k += 1;
    }
    -l
}
