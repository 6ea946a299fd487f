//! Stable content hash of a served document (the `?hash=` of the v3 index).

/// FNV-1a, 128 bit, as 32 upper-case hex digits. Not cryptographic: it only has
/// to change when the document changes and stay the same across restarts and
/// builds (which `std`'s hasher does not promise).
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let hash = bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{hash:032X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_content_sensitive() {
        assert_eq!(content_hash(b""), "6C62272E07BB014262B821756295C58D");
        assert_eq!(content_hash(b"a"), content_hash(b"a"));
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
    }
}
