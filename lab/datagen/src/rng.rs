//! Deterministic randomness. Every value in the dataset is drawn from a stream keyed by
//! `(seed, entity index, aspect)`, so any entity, and any aspect of it, can be produced alone and
//! in any order: that is what lets `truth` count without formatting and `emit` run in parallel.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent sub-streams of one entity. Adding a value to one aspect must not shift the
/// values of another, so every aspect gets its own stream; never reorder or reuse the numbers.
#[derive(Clone, Copy, Debug)]
pub enum Aspect {
    Profile = 1,
    DeviceCount = 2,
    Devices = 3,
    AlexaLink = 4,
    Alexa = 5,
    ScaleCount = 6,
    Scale = 7,
    OrderCount = 8,
    Orders = 9,
    PaymentFlag = 10,
    Payment = 11,
    SessionFlag = 12,
    Session = 13,
    McSession = 14,
    Crm = 15,
    Firmware = 16,
    Telemetry = 17,
    Jobs = 18,
    Counter = 19,
    Stats = 20,
    Fragment = 21,
    /// Keys of the permutations that make unique ids look random.
    Ids = 22,
}

/// SplitMix64: tiny state, fast, and good enough for synthetic data.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64, index: u64, aspect: Aspect) -> Rng {
        let base = mix(mix(seed ^ 0x6C62_272E_07BB_0142) ^ index.wrapping_mul(GOLDEN));
        Rng {
            state: mix(base ^ (aspect as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)),
        }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-40 for every `n` used here).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    #[inline]
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    #[inline]
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    /// Picks an item by integer weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (item, w) in items {
            if x < *w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }
}

/// A keyed bijection on `0..n`. Ids that must be unique (e-mail numbers, device serials) are
/// derived from the entity index through it, so they are unique by construction yet look random.
pub fn permute_below(x: u64, n: u64, key: u64) -> u64 {
    debug_assert!(x < n);
    if n <= 1 {
        return 0;
    }
    let bits = (64 - (n - 1).leading_zeros()).max(2);
    let mut y = x;
    // Cycle walking: iterate a permutation of the enclosing power of two until we land back
    // in range; it terminates because x's cycle contains x, and takes < 2 steps on average.
    loop {
        y = permute_bits(y, bits, key);
        if y < n {
            return y;
        }
    }
}

fn permute_bits(mut x: u64, bits: u32, key: u64) -> u64 {
    let mask = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
    let shift = bits.div_ceil(2);
    let mut k = key;
    for _ in 0..4 {
        k = mix(k.wrapping_add(GOLDEN));
        // Each step (xor with a constant, multiply by an odd number, xor-shift right) is a
        // bijection on `bits`-bit values, so the composition is one too.
        x = ((x ^ (k & mask)).wrapping_mul(k | 1)) & mask;
        x ^= x >> shift;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::new(7, 3, Aspect::Profile).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let b = Rng::new(7, 3, Aspect::Devices).next_u64();
        let c = Rng::new(7, 4, Aspect::Profile).next_u64();
        let d = Rng::new(8, 3, Aspect::Profile).next_u64();
        assert!(a[0] != b && a[0] != c && a[0] != d);
    }

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 3, 10, 100, 1000, 4097] {
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = permute_below(x, n, 42);
                assert!(!seen[y as usize], "n={n} collision at {x}");
                seen[y as usize] = true;
            }
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1, 2, Aspect::Ids);
        for n in [1u64, 2, 7, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}
