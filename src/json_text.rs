//! The bytes that end a plain run of JSON string text: a quote, a backslash or a
//! control character. The log line's escaping and the review reader's string scan
//! both look for the first of them.

/// Whether `b` cannot stand for itself inside a JSON string.
pub(crate) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// How many bytes from the start are plain string text. 16-byte chunks are checked
/// whole: a byte-by-byte loop was half the cost of a review's log line, and most of
/// the cost of reading a review.
pub(crate) fn plain_len(bytes: &[u8]) -> usize {
    let mut checked = 0;
    for chunk in bytes.chunks_exact(16) {
        let mask = special_bytes(chunk);
        if mask != 0 {
            return checked + mask.trailing_zeros() as usize;
        }
        checked += 16;
    }
    let tail = bytes.get(checked..).unwrap_or_default();
    checked
        + tail
            .iter()
            .position(|&b| needs_escape(b))
            .unwrap_or(tail.len())
}

/// Bit i set where `chunk[i]` needs escaping, for a chunk of 16 bytes. SSE2 is part of
/// every x86-64 CPU (a target feature of the x86-64 baseline), so nothing is detected
/// at run time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code, reason = "SSE2 intrinsics, see SAFETY")]
fn special_bytes(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    assert_eq!(chunk.len(), 16);
    // SAFETY: the target has SSE2 (cfg above); the load reads the chunk's 16 bytes,
    // and an unaligned load has no other requirement.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned b < 0x20 exactly where min(b, 0x1f) == b.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn special_bytes(chunk: &[u8]) -> u32 {
    (chunk.iter().enumerate()).fold(0, |mask, (i, &b)| mask | u32::from(needs_escape(b)) << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_special_byte_at_every_position() {
        for len in [0, 1, 15, 16, 17, 31, 32, 40] {
            let plain = vec![b'a'; len];
            assert_eq!(plain_len(&plain), len);
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0, 0x1f] {
                    let mut bytes = plain.clone();
                    bytes[at] = special;
                    // A later special byte does not hide the first.
                    bytes.push(b'"');
                    assert_eq!(plain_len(&bytes), at, "len {len} at {at} byte {special}");
                }
            }
        }
        // Bytes of multibyte characters and DEL are plain.
        let text = "é ü \u{7f} ok, and a long enough tail";
        assert_eq!(plain_len(text.as_bytes()), text.len());
    }
}
