//! The tests' deterministic pseudo-random numbers.

/// Marsaglia's 32-bit xorshift (shifts 13, 17, 5): tiny, fast and the same on every platform,
/// so a test's "random" tokens or weights are fixed by its seed. The state must not be 0.
#[derive(Clone, Debug)]
pub struct XorShift32(u32);

impl XorShift32 {
    /// A generator whose first output is the step after `state`.
    pub fn new(state: u32) -> Self {
        assert_ne!(state, 0, "xorshift state 0 only ever yields 0");
        XorShift32(state)
    }

    /// The next state, which is also the output.
    pub fn next_u32(&mut self) -> u32 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.0 = s;
        s
    }
}

impl Iterator for XorShift32 {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        Some(self.next_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::XorShift32;

    #[test]
    fn matches_the_published_sequence() {
        // Marsaglia (2003), "Xorshift RNGs": xor32 with (13, 17, 5) from its default state
        // 2463534242 first returns 723471715.
        assert_eq!(XorShift32::new(2_463_534_242).next_u32(), 723_471_715);
        println!("checked 1 case");
    }
}
