//! A small, fast, deterministic 64-bit hash for sticky decisions and the
//! hash ring: FNV-1a over the bytes, then a murmur3 finalizer so that short,
//! similar keys (`user-1`, `user-2`) still spread over the whole range.

/// Hashes `bytes` to 64 bits; the same input always gives the same output,
/// across processes and restarts.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_spreads() {
        assert_eq!(hash64(b"user-1"), hash64(b"user-1"));
        let low = (0..1000)
            .filter(|i| hash64(format!("user-{i}").as_bytes()) < u64::MAX / 2)
            .count();
        assert!((400..600).contains(&low), "{low}");
    }
}
