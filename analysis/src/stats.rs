//! Descriptive statistics and the percentile bootstrap. Deterministic: each bootstrap draws from
//! its own ChaCha stream, seeded by [`BOOTSTRAP_SEED`] mixed with the stream's name, so one metric's
//! interval never depends on which other metrics were computed, or in which order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The fixed master seed of every bootstrap ("roomsim!" in ASCII).
pub const BOOTSTRAP_SEED: u64 = 0x726f_6f6d_7369_6d21;
/// Resamples per interval.
pub const BOOTSTRAP_RESAMPLES: u32 = 2000;
/// Two-sided level of every interval.
pub const CONFIDENCE: f64 = 0.95;

pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

pub fn median(xs: &[f64]) -> Option<f64> {
    let sorted = sorted(xs);
    quantile_sorted(&sorted, 0.5)
}

pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Linear-interpolation quantile (type 7, as R's default) of already sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// 95% percentile-bootstrap interval of the mean of `xs`, from [`BOOTSTRAP_RESAMPLES`] resamples
/// drawn from the stream named `stream`. None for empty input; a point for constant input.
pub fn bootstrap_mean_ci(xs: &[f64], stream: &str) -> Option<(f64, f64)> {
    bootstrap_mean_ci_with(xs, stream, BOOTSTRAP_RESAMPLES)
}

pub fn bootstrap_mean_ci_with(xs: &[f64], stream: &str, resamples: u32) -> Option<(f64, f64)> {
    let n = u32::try_from(xs.len()).expect("at most 2^32 samples");
    if n == 0 || resamples == 0 {
        return None;
    }
    if xs.iter().all(|x| *x == xs[0]) {
        // every resample is the same sample; skip the draws (and their rounding)
        return Some((xs[0], xs[0]));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED ^ crate::fmt::fnv1a64(stream));
    let mut means = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let mut sum = 0.0;
        for _ in 0..n {
            sum += xs[rng.gen_range(0..n) as usize];
        }
        means.push(sum / f64::from(n));
    }
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some((quantile_sorted(&means, tail)?, quantile_sorted(&means, 1.0 - tail)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.25), Some(2.5));
    }

    #[test]
    fn bootstrap_is_deterministic_and_contains_the_mean() {
        let xs: Vec<f64> = (0..40).map(|i| ((i * 37) % 11) as f64 * 1.5).collect();
        let a = bootstrap_mean_ci(&xs, "m").unwrap();
        let b = bootstrap_mean_ci(&xs, "m").unwrap();
        assert_eq!(a.0.to_bits(), b.0.to_bits());
        assert_eq!(a.1.to_bits(), b.1.to_bits());
        let m = mean(&xs).unwrap();
        assert!(a.0 < m && m < a.1, "{a:?} vs {m}");
        // another stream gives a (slightly) different interval around the same mean
        let c = bootstrap_mean_ci(&xs, "other").unwrap();
        assert_ne!(a, c);
        assert!(c.0 < m && m < c.1);
    }

    #[test]
    fn constant_and_empty_inputs() {
        assert_eq!(bootstrap_mean_ci(&[0.0; 7], "z"), Some((0.0, 0.0)));
        assert_eq!(bootstrap_mean_ci(&[4.5], "z"), Some((4.5, 4.5)));
        assert_eq!(bootstrap_mean_ci(&[], "z"), None);
    }
}
