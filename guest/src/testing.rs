//! What several modules' tests share.

/// xorshift64: a pseudo-random sequence that is the same every run, for the tests' random
/// walks and generated inputs.
pub(crate) struct XorShift(pub u64);

impl XorShift {
    /// The next number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
