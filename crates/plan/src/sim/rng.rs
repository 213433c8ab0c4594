//! Random numbers: xoshiro256++ streams seeded through SplitMix64 (Blackman & Vigna).
//!
//! Written out here (a few lines) so that a seed means the same numbers forever, on
//! every platform and whatever a dependency does in a later version: "same seed, same
//! result" is part of the simulator's contract.

/// One step of SplitMix64: a good 64-bit mix, used to seed streams and to derive the
/// numbers of one (lead, attempt) directly from their coordinates.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A xoshiro256++ stream.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The stream for `seed` and a stream number: streams with different numbers are
    /// independent, so each arrival source and each purpose draws from its own.
    pub(crate) fn stream(seed: u64, stream: u64) -> Rng {
        let mut sm = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        // Skip one output so that stream 0 of seed 0 does not start from a zero state.
        splitmix64(&mut sm);
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Rng { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        // Through i64 (the value fits in 53 bits): the same number, one instruction
        // instead of the unsigned conversion's sequence.
        ((self.next_u64() >> 11) as i64) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential with mean 1.
    pub(crate) fn exp1(&mut self) -> f64 {
        // 1 - U lies in (0, 1], so the logarithm is finite.
        -(1.0 - self.uniform()).ln()
    }

    /// Standard normal (Marsaglia's polar method).
    pub(crate) fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_and_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::stream(7, 1);
        let mut y = Rng::stream(7, 2);
        assert_ne!(x.next_u64(), y.next_u64());
    }

    #[test]
    fn moments_are_right() {
        let mut r = Rng::stream(1, 0);
        let n = 200_000;
        let (mut sum_u, mut sum_e, mut sum_n, mut sum_n2) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..n {
            sum_u += r.uniform();
            sum_e += r.exp1();
            let z = r.normal();
            sum_n += z;
            sum_n2 += z * z;
        }
        let n = n as f64;
        // Means within 5 standard errors.
        assert!((sum_u / n - 0.5).abs() < 5.0 * (1.0 / 12.0f64).sqrt() / n.sqrt());
        assert!((sum_e / n - 1.0).abs() < 5.0 / n.sqrt());
        assert!((sum_n / n).abs() < 5.0 / n.sqrt());
        assert!((sum_n2 / n - 1.0).abs() < 5.0 * 2.0f64.sqrt() / n.sqrt());
    }
}
