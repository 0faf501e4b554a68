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

/// The standard normal distribution function Φ(z), from erfc by Abramowitz & Stegun 7.1.26
/// (absolute error below 1.5e-7): enough for p-values.
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// Sample standard deviation (denominator n − 1); None for fewer than two values.
pub fn sample_sd(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// Two-sided 95% quantiles of Student's t, t(0.975; df) for df = 1..=30.
const T975: [f64; 30] = [
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
];

/// t(0.975; df): the table up to 30 degrees of freedom, above that the Cornish–Fisher expansion
/// of t around the normal quantile z = 1.959964 (Abramowitz & Stegun 26.7.5), which is within
/// 1e-6 of the exact value from df = 30 on.
pub fn t_quantile_975(df: u32) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df as usize - 1]),
        _ => {
            let z: f64 = 1.959_963_984_540_054;
            let v = f64::from(df);
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
            let g4 =
                (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5) - 1920.0 * z.powi(3) - 945.0 * z) / 92160.0;
            Some(z + g1 / v + g2 / v.powi(2) + g3 / v.powi(3) + g4 / v.powi(4))
        }
    }
}

/// 95% Student-t interval of the mean: mean ± t(0.975; n − 1) · s / √n, s the sample standard
/// deviation. Exact for normal data at any n, and the usual large-sample interval otherwise;
/// unlike the percentile bootstrap it does not shrink to too narrow an interval for the handful
/// of seeds a sweep point has. None for fewer than two values (no spread to estimate).
pub fn t_mean_ci(xs: &[f64]) -> Option<(f64, f64)> {
    let n = u32::try_from(xs.len()).ok()?;
    let (m, sd, t) = (mean(xs)?, sample_sd(xs)?, t_quantile_975(n.checked_sub(1)?)?);
    let half = t * sd / f64::from(n).sqrt();
    Some((m - half, m + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_by_hand() {
        // xs = 10, 20, 30: mean 20, s = sqrt(((-10)^2 + 0 + 10^2) / 2) = 10, n = 3,
        // t(0.975; 2) = 4.302652730, half width = 4.302652730 * 10 / sqrt(3) = 24.841377...
        let (lo, hi) = t_mean_ci(&[10.0, 20.0, 30.0]).unwrap();
        let half = 4.302652730 * 10.0 / 3f64.sqrt();
        assert!((lo - (20.0 - half)).abs() < 1e-9 && (hi - (20.0 + half)).abs() < 1e-9, "{lo} {hi}");
        assert!((half - 24.841377).abs() < 1e-5);
        // two values 4, 6: mean 5, s = sqrt(2), t(0.975; 1) = 12.706204736, half = 12.7062 * sqrt(2)/sqrt(2)
        let (lo, hi) = t_mean_ci(&[4.0, 6.0]).unwrap();
        assert!((lo - (5.0 - 12.706204736)).abs() < 1e-9 && (hi - (5.0 + 12.706204736)).abs() < 1e-9);
        assert_eq!(t_mean_ci(&[7.0]), None);
        assert_eq!(t_mean_ci(&[]), None);
        assert_eq!(t_mean_ci(&[3.0, 3.0, 3.0]), Some((3.0, 3.0)));
    }

    #[test]
    fn t_quantiles_match_published_values() {
        // Published two-sided 95% values: df 30 -> 2.0423, 60 -> 2.0003, 120 -> 1.9799.
        assert!((t_quantile_975(31).unwrap() - 2.039513).abs() < 1e-5);
        assert!((t_quantile_975(60).unwrap() - 2.000298).abs() < 1e-5);
        assert!((t_quantile_975(120).unwrap() - 1.979930).abs() < 1e-5);
        assert!((t_quantile_975(1_000_000).unwrap() - 1.959966).abs() < 1e-5);
        assert_eq!(t_quantile_975(0), None);
        // the table and the expansion meet smoothly at 30 / 31
        assert!(t_quantile_975(30).unwrap() > t_quantile_975(31).unwrap());
    }

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
