//! Request data quoted back in answers and logs.

/// Longest piece of request data quoted back in a message or a log line.
pub(crate) const MAX_QUOTED: usize = 256;

/// `s` cut to at most `max` bytes (on a character boundary), saying how long it was.
/// Request data quoted in answers and logs goes through here, so a 7 MiB value
/// never becomes a 7 MiB message or log line.
pub(crate) fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}... ({} bytes)", &s[..end], s.len()))
}
