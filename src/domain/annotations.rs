//! The `vulngate.io/` namespace annotations.

pub(crate) const ANNOTATION_PREFIX: &str = "vulngate.io/";
pub const MODE_ANNOTATION: &str = "vulngate.io/mode";
pub const UNSCANNED_ANNOTATION: &str = "vulngate.io/unscanned";
pub const EXEMPT_IMAGES_ANNOTATION: &str = "vulngate.io/exempt-images";
/// Most exemption patterns read from one namespace annotation: each image of every
/// review in the namespace is matched against all of them.
pub(crate) const MAX_EXEMPT_PATTERNS: usize = 64;
pub const COUNT_ANNOTATION: &str = "vulngate.io/count";
pub const ALLOW_CVES_ANNOTATION: &str = "vulngate.io/allow-cves";
pub const GRACE_DAYS_ANNOTATION: &str = "vulngate.io/grace-days";
pub const MAX_SCAN_AGE_ANNOTATION: &str = "vulngate.io/max-scan-age";
pub const BREAK_GLASS_ANNOTATION: &str = "vulngate.io/break-glass-until";
pub const CONTROLLER_PODS_ANNOTATION: &str = "vulngate.io/controller-pods";
