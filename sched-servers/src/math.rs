//! Integer arithmetic helpers: exact, overflow-free ratios in nanoseconds and
//! parts per billion (the policies use no floating point).

/// One whole in parts per billion.
pub const PPB_ONE: u64 = 1_000_000_000;

/// `a * b / c`, rounded down, computed in 128 bits; `c` must not be 0.
/// Saturates at `u64::MAX`.
pub fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    let wide = u128::from(a) * u128::from(b) / u128::from(c);
    u64::try_from(wide).unwrap_or(u64::MAX)
}

/// `a * b / c`, rounded up, computed in 128 bits; `c` must not be 0.
/// Saturates at `u64::MAX`.
pub fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    let wide = (u128::from(a) * u128::from(b)).div_ceil(u128::from(c));
    u64::try_from(wide).unwrap_or(u64::MAX)
}

/// `part / whole` in parts per billion, rounded up (so sums of utilisations
/// never understate); `whole` must not be 0.
pub fn ceil_ratio_ppb(part: u64, whole: u64) -> u64 {
    mul_div_ceil(part, PPB_ONE, whole)
}

/// `part / whole` in parts per million, rounded up, for messages.
pub fn ceil_ratio_ppm(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    u32::try_from(mul_div_ceil(part, 1_000_000, whole)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_div_is_exact_beyond_64_bits() {
        assert_eq!(mul_div(u64::MAX, 3, 3), u64::MAX);
        assert_eq!(mul_div(10, 1, 3), 3);
        assert_eq!(mul_div_ceil(10, 1, 3), 4);
        assert_eq!(mul_div(u64::MAX, 2, 1), u64::MAX, "saturates");
    }

    #[test]
    fn ratios_round_up() {
        assert_eq!(ceil_ratio_ppb(1, 3), 333_333_334);
        assert_eq!(ceil_ratio_ppb(20, 40), PPB_ONE / 2);
        assert_eq!(ceil_ratio_ppm(30, 50), 600_000);
        assert_eq!(ceil_ratio_ppm(1, 0), 0);
    }
}
