//! The few special functions the Erlang formulas need, in forms that stay exact for
//! arguments in the millions: sums of logarithms and of reciprocals over long runs
//! (log-gamma and digamma differences), and the normal distribution.

/// Below this many terms a sum is added up term by term (exact to rounding); above it
/// the Stirling series takes over. 4096 terms cost a few microseconds.
const DIRECT_TERMS: f64 = 4096.0;

/// Stirling's series is used only from this argument on, where its first four
/// correction terms leave an error below 1e-17.
const STIRLING_FROM: f64 = 30.0;

/// The Stirling correction `lnΓ(z) - [(z - ½)·ln z - z + ½·ln 2π]` for `z >= 30`.
fn stirling_tail(z: f64) -> f64 {
    let z2 = z * z;
    (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * z2)) / z2) / z2) / z
}

/// `Σ_{i=1..j} ln(z / (x + i))` for `x >= 0`, `z > 0`: the logarithm of the largest term of
/// the Erlang-A series. Exact to about 1e-12 (absolute) for any `j`.
pub(crate) fn ln_peak_term(x: f64, z: f64, j: f64) -> f64 {
    if j <= DIRECT_TERMS {
        let mut sum = 0.0;
        let mut i = 1.0;
        while i <= j {
            sum += (z / (x + i)).ln();
            i += 1.0;
        }
        return sum;
    }
    // The first terms one by one until x + i reaches the Stirling range.
    let mut sum = 0.0;
    let mut i = 1.0;
    while x + i < STIRLING_FROM {
        sum += (z / (x + i)).ln();
        i += 1.0;
    }
    // Then Σ_{i..=j} ln(z/(x+i)) = m·ln z - [lnΓ(a + m) - lnΓ(a)] with a = x + i and
    // m = j - i + 1 terms, rearranged so that no two large numbers are subtracted:
    // m·ln(z/a) + m - (a + m - ½)·ln(1 + m/a) - [tail(a + m) - tail(a)].
    let a = x + i;
    let m = j - i + 1.0;
    sum + m * ((z - a) / a).ln_1p() + m - (a + m - 0.5) * (m / a).ln_1p() - (stirling_tail(a + m) - stirling_tail(a))
}

/// `Σ_{i=1..n} 1 / (x + i)` for `x >= 0` (a digamma difference `ψ(x+n+1) - ψ(x+1)`).
pub(crate) fn harmonic(x: f64, n: f64) -> f64 {
    if n <= DIRECT_TERMS {
        let mut sum = 0.0;
        let mut i = 1.0;
        while i <= n {
            sum += 1.0 / (x + i);
            i += 1.0;
        }
        return sum;
    }
    let mut sum = 0.0;
    let mut i = 1.0;
    while x + i < STIRLING_FROM {
        sum += 1.0 / (x + i);
        i += 1.0;
    }
    // ψ(b) - ψ(a) with a = x + i, b = x + n + 1, both >= 30, from the asymptotic series
    // ψ(z) = ln z - 1/(2z) - 1/(12z²) + 1/(120z⁴) - 1/(252z⁶).
    let a = x + i;
    let b = x + n + 1.0;
    let tail = |z: f64| {
        let z2 = z * z;
        -0.5 / z - (1.0 / 12.0 - (1.0 / 120.0 - 1.0 / (252.0 * z2)) / z2) / z2
    };
    sum + ((b - a) / a).ln_1p() + tail(b) - tail(a)
}

/// The standard normal distribution function Φ(x), to about 1e-7 relative (enough for
/// the square-root staffing estimate it serves).
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal density φ(x).
pub(crate) fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The complementary error function, by the Chebyshev fit of Numerical Recipes
/// (`erfcc`, fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}
