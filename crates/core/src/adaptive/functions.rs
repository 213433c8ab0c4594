//! Whole-number functions of the current limit, as in Netflix concurrency-limits'
//! `limit/functions/` (`Log10RootFunction.java`, `SquareRootFunction.java`).

/// A whole number computed from the current limit: Vegas' `alpha`, `beta`, `threshold`,
/// increase and decrease steps, and Gradient2's `queue_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitFn {
    /// Always this value (the Java builders' `alpha(int)`, `queueSize(int)`, …).
    Fixed(u32),
    /// `times * log10_root(limit)`; Vegas' defaults are `3×`, `6×` and `1×` of it.
    Log10Root {
        /// The multiplier.
        times: u32,
    },
    /// `max(at_least, square_root(limit))` (`SquareRootFunction.create(at_least)`).
    SquareRoot {
        /// The floor.
        at_least: u32,
    },
}

impl LimitFn {
    /// The value for a limit.
    pub fn apply(self, limit: u32) -> u32 {
        match self {
            LimitFn::Fixed(n) => n,
            LimitFn::Log10Root { times } => times.saturating_mul(log10_root(limit)),
            LimitFn::SquareRoot { at_least } => square_root(limit).max(at_least),
        }
    }
}

/// `Log10RootFunction`: `max(1, floor(log10(limit)))` below 1000 and, as in the Java
/// lookup table, `floor(sqrt(limit))` from 1000 on. So 1 for every limit below 100.
pub fn log10_root(limit: u32) -> u32 {
    if limit < 1000 {
        // log10 of 0 is -inf; the cast saturates and max(1, ..) gives 1, as in Java.
        (f64::from(limit).log10() as i64).max(1) as u32
    } else {
        f64::from(limit).sqrt() as u32
    }
}

/// `SquareRootFunction`: `max(1, floor(sqrt(limit)))`.
pub fn square_root(limit: u32) -> u32 {
    (f64::from(limit).sqrt() as u32).max(1)
}
