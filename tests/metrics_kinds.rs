//! Every kind vulngate judges has a review series of its own in /metrics: the metrics
//! keep their list of kinds (they sit below the admission wire format), and this
//! test keeps it equal to the kinds admission judges.

use std::time::Duration;

use vulngate::admission::JUDGED_KINDS;
use vulngate::metrics::Metrics;

#[test]
fn each_judged_kind_has_its_own_review_series() {
    let metrics = Metrics::new();
    for (kind, _) in JUDGED_KINDS {
        metrics.review(kind, "allowed", Duration::from_millis(1));
    }
    let text = metrics.encode();
    for (kind, _) in JUDGED_KINDS {
        assert!(
            text.contains(&format!("kind=\"{kind}\"")),
            "no series of its own for {kind}:\n{text}"
        );
    }
    assert!(
        !text.contains("kind=\"other\",result=\"allowed\"} 1"),
        "a judged kind was counted as other:\n{text}"
    );
}
