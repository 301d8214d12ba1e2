//! Statistics of the benchmark: median with a distribution-free confidence
//! interval (order statistics), the icount agreement rule, and the `~`
//! rule for ratios whose intervals overlap.

/// Median, range and interval of one metric over the repetitions of a cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub med: f64,
    pub min: f64,
    pub max: f64,
    /// The interval around the median (see [`median_interval`]), widened to
    /// the noise floor given to [`stat_floor`].
    pub lo: f64,
    pub hi: f64,
    /// Coverage of the order-statistics interval before any widening (0.95
    /// or more once n >= 6; 1 - 2^(1-n) below that: 0.5 at n=2, 0.75 at n=3).
    pub coverage: f64,
    pub n: usize,
}

/// The confidence level the report aims for.
pub const LEVEL: f64 = 0.95;

/// P(X <= k) for X ~ Binomial(n, 1/2).
fn binom_cdf_half(n: usize, k: usize) -> f64 {
    let mut c = 1.0f64; // C(n, 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            c = c * (n - i + 1) as f64 / i as f64;
        }
        sum += c;
    }
    sum / 2f64.powi(n as i32)
}

/// The distribution-free interval for the median of `sorted` (ascending):
/// the widest-inside pair of order statistics (x_(k+1), x_(n-k)) whose
/// coverage 1 - 2 P(B(n, 1/2) <= k) is at least [`LEVEL`]. Below n = 6 no
/// pair reaches 95 %; the range (k = 0) is returned with its real coverage.
/// Returns (lo, hi, coverage).
pub fn median_interval(sorted: &[f64]) -> (f64, f64, f64) {
    let n = sorted.len();
    assert!(n > 0);
    let mut k = 0;
    while k + 1 < n / 2 + n % 2 {
        let cov = 1.0 - 2.0 * binom_cdf_half(n, k + 1);
        if cov < LEVEL {
            break;
        }
        k += 1;
    }
    let cov = 1.0 - 2.0 * binom_cdf_half(n, k);
    let cov = if n == 1 { 0.0 } else { cov };
    (sorted[k], sorted[n - 1 - k], cov)
}

pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Median and interval, no floor.
#[cfg(test)]
pub fn stat(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
    stat_floor(values, 0.0)
}

/// Median and interval; the interval is widened to at least +-`floor_pct`
/// percent of the median (the known repeat noise of the timing model: under
/// icount two repetitions agree within a few tenths of a percent, so a floor
/// of 1 % keeps two cells within ~2 % of each other from being called
/// different).
pub fn stat_floor(values: impl IntoIterator<Item = f64>, floor_pct: f64) -> Option<Stat> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let med = median(&v);
    let (mut lo, mut hi, coverage) = median_interval(&v);
    let f = med.abs() * floor_pct / 100.0;
    lo = lo.min(med - f);
    hi = hi.max(med + f);
    Some(Stat {
        med,
        min: v[0],
        max: v[v.len() - 1],
        lo,
        hi,
        coverage,
        n: v.len(),
    })
}

/// The icount agreement rule: all repetitions within `pct` percent of each
/// other ((max - min) / min). One value agrees with itself.
pub fn agree(values: &[f64], pct: f64) -> bool {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return false;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    lo > 0.0 && (hi - lo) / lo * 100.0 <= pct
}

/// Spread in percent: (max - min) / min.
pub fn spread_pct(s: &Stat) -> f64 {
    if s.min > 0.0 {
        (s.max - s.min) / s.min * 100.0
    } else {
        f64::NAN
    }
}

/// a compared with b.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cmp {
    /// Ratio of the medians.
    pub ratio: f64,
    /// Ratio interval: a.lo / b.hi .. a.hi / b.lo.
    pub lo: f64,
    pub hi: f64,
    /// The two intervals overlap: no difference outside the noise.
    pub same: bool,
}

pub fn compare(a: &Stat, b: &Stat) -> Option<Cmp> {
    if !(b.med > 0.0 && b.lo > 0.0 && a.med.is_finite()) {
        return None;
    }
    Some(Cmp {
        ratio: a.med / b.med,
        lo: a.lo / b.hi,
        hi: a.hi / b.lo,
        same: a.lo <= b.hi && b.lo <= a.hi,
    })
}

impl Cmp {
    /// `~` when the intervals overlap, else `1.61×`.
    pub fn text(&self) -> String {
        if self.same {
            "~".into()
        } else {
            format!("{:.2}×", self.ratio)
        }
    }

    /// A win for a (higher is better): outside the noise and above 1.
    pub fn win_higher(&self) -> bool {
        !self.same && self.ratio > 1.0
    }

    /// A win for a when lower is better (CPU per GiB).
    pub fn win_lower(&self) -> bool {
        !self.same && self.ratio < 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistic_interval() {
        // n = 2..5: no pair reaches 95 %, the range with its real coverage.
        let (lo, hi, c) = median_interval(&[1.0, 2.0]);
        assert_eq!((lo, hi), (1.0, 2.0));
        assert!((c - 0.5).abs() < 1e-12);
        let (_, _, c) = median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((c - 0.9375).abs() < 1e-12);
        // n = 6: (x1, x6) covers 96.9 %.
        let v: Vec<f64> = (1..=6).map(f64::from).collect();
        let (lo, hi, c) = median_interval(&v);
        assert_eq!((lo, hi), (1.0, 6.0));
        assert!((c - 0.96875).abs() < 1e-9);
        // n = 9: (x2, x8) covers 96.1 %, (x3, x7) only 82 %.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        let (lo, hi, c) = median_interval(&v);
        assert_eq!((lo, hi), (2.0, 8.0));
        assert!((LEVEL..0.97).contains(&c), "{c}");
        // n = 20: (x6, x15) covers 95.9 %.
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let (lo, hi, c) = median_interval(&v);
        assert_eq!((lo, hi), (6.0, 15.0));
        assert!(c >= LEVEL, "{c}");
        assert_eq!(median_interval(&[7.0]), (7.0, 7.0, 0.0));
    }

    #[test]
    fn stat_median_floor() {
        let s = stat([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.med, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!((s.lo, s.hi), (1.0, 3.0));
        assert_eq!(stat([4.0, 1.0]).unwrap().med, 2.5);
        assert!(stat([f64::NAN]).is_none());
        // The floor widens a tight interval, never narrows a wide one.
        let s = stat_floor([100.0, 100.2], 1.0).unwrap();
        assert!(
            (s.lo - 99.099).abs() < 1e-9 && (s.hi - 101.101).abs() < 1e-9,
            "{s:?}"
        );
        let s = stat_floor([90.0, 110.0], 1.0).unwrap();
        assert_eq!((s.lo, s.hi), (90.0, 110.0));
    }

    #[test]
    fn agreement_rule() {
        assert!(agree(&[100.0, 102.0], 2.0));
        assert!(!agree(&[100.0, 102.1], 2.0));
        assert!(agree(&[102.0, 100.0], 2.0));
        assert!(agree(&[5.0], 2.0));
        assert!(!agree(&[], 2.0));
        assert!(!agree(&[0.0, 0.0], 2.0));
        assert!(!agree(&[100.0, 101.0, 103.0], 2.0));
    }

    #[test]
    fn tilde_rule() {
        let a = stat_floor([100.0, 100.5], 1.0).unwrap();
        let b = stat_floor([101.0, 101.3], 1.0).unwrap();
        let c = compare(&a, &b).unwrap();
        assert!(c.same && c.text() == "~" && !c.win_higher() && !c.win_lower());
        let d = stat_floor([150.0, 150.2], 1.0).unwrap();
        let c = compare(&d, &a).unwrap();
        assert!(!c.same && c.win_higher() && !c.win_lower());
        assert_eq!(c.text(), "1.50×");
        assert!(c.lo < c.ratio && c.ratio < c.hi);
        let c = compare(&a, &d).unwrap();
        assert!(c.win_lower() && c.text() == "0.67×");
        // Wide intervals overlap even with different medians.
        let w1 = stat([80.0, 120.0]).unwrap();
        let w2 = stat([110.0, 140.0]).unwrap();
        assert!(compare(&w2, &w1).unwrap().same);
        assert!(compare(&a, &stat([0.0]).unwrap()).is_none());
    }
}
