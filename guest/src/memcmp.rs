//! `memcmp` for the WebAssembly builds, eight bytes at a time.
//!
//! wasi-libc's `memcmp` (musl's) compares one byte per loop turn. Every string equality and
//! ordering in the guest ends there: the node table's key compare for each of `filter`'s
//! thousands of candidates, card lookups by UUID, map keys. Profiles of the extender bench put
//! 18–22% of the guest's time in it (issue #6). wasm-ld takes this definition before the
//! archive's, so the whole module (wasi-libc's own callers included) uses it. Natively only
//! [`compare`] is built, and tested against the standard library's ordering.

/// C's `memcmp` on two slices of equal length: negative, zero or positive as the first
/// differing byte of `a` is below, equal to or above `b`'s (unsigned).
///
/// It must not compare slices with `==` or `cmp`: in the guest those call `memcmp`, this.
pub fn compare(a: &[u8], b: &[u8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    for (x, y) in words_a.by_ref().zip(words_b.by_ref()) {
        let x = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let y = u64::from_le_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        if x != y {
            // Little-endian: the first differing byte is the lowest differing one.
            let shift = (x ^ y).trailing_zeros() / 8 * 8;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
    }
    for (p, q) in words_a.remainder().iter().zip(words_b.remainder()) {
        if p != q {
            return i32::from(*p) - i32::from(*q);
        }
    }
    0
}

/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes (C's contract for `memcmp`).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: the caller vouches for `n` readable bytes at each pointer (C's contract), and
    // `n > 0` means neither is null; the slices are only read, and dropped on return.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, n),
            std::slice::from_raw_parts(b, n),
        )
    };
    compare(a, b)
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn agrees_with_the_standard_ordering_across_word_boundaries() {
        let base: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..base.len() {
            let a = &base[..len];
            assert_eq!(compare(a, a), 0, "equal at length {len}");
            for at in 0..len {
                for delta in [1u8, 0x7f, 0x80, 0xff] {
                    let mut b = a.to_vec();
                    b[at] = b[at].wrapping_add(delta);
                    let want = a.cmp(&b[..]) as i32;
                    let got = compare(a, &b).signum();
                    assert_eq!(got, want, "length {len}, byte {at}, +{delta}");
                    assert_eq!(compare(&b, a).signum(), -want);
                    assert_eq!(
                        compare(a, &b),
                        i32::from(a[at]) - i32::from(b[at]),
                        "C's value: the difference of the first differing bytes"
                    );
                }
            }
        }
    }
}
