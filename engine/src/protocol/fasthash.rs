//! A fast, fixed-key hasher for maps keyed by strings the simulation makes itself (event IDs,
//! room IDs, state keys). Event IDs are hashes already, so a word-at-a-time multiply-xor mix is
//! enough; std's SipHash (built against hash flooding, with a random key per map) costs several
//! times more per lookup. The key is fixed, but no output may depend on a map's iteration order
//! anyway: these maps are only looked up, never iterated into an output.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Default, Clone, Copy)]
pub struct StrHasher(u64);

impl StrHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(MUL);
    }
}

impl Hasher for StrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // Spread the high bits (hashbrown takes its control byte from the top 7).
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(MUL) ^ (h >> 32)
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<StrHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<StrHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_strings_hash_apart() {
        let mut m: FastMap<String, usize> = FastMap::default();
        for i in 0..10_000 {
            m.insert(format!("$event{i}"), i);
        }
        for i in 0..10_000 {
            assert_eq!(m.get(format!("$event{i}").as_str()), Some(&i));
        }
        let h = |s: &str| {
            let mut h = StrHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_ne!(h("a"), h("a\0"));
        assert_ne!(h("abcdefgh"), h("abcdefgi"));
    }
}
