//! Unit tests of the PII evaluation: scoring, conversations, and the targets on labelled sets.

use super::*;
use crate::pii::PiiConfig;

#[test]
fn the_generated_set_meets_the_targets() {
    let r = evaluate(
        &Redactor::new(&PiiConfig::default()),
        "generated",
        &generated(100),
    );
    for kind in [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::Card,
        PiiKind::Ip,
    ] {
        assert!(
            r.by_kind[&kind].recall >= 0.99,
            "{kind}: {:?} {:?}",
            r.by_kind[&kind],
            r.misses
        );
    }
    assert!(r.by_kind[&PiiKind::Name].recall >= 0.9, "{:?}", r.misses);
    assert!(r.precision >= 0.95, "{:?}", r.false_alarms);
}

/// Names on real text nobody here wrote, hand-labelled (testdata/pii/README.md): casual
/// peer chat (ESConv dialogues redacted as conversations, Topical-Chat turns) and
/// counselling answers (counsel-chat). Regression for over-redaction on casual chat.
#[test]
fn names_meet_the_targets_on_hand_labelled_chat_and_counselling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pii");
    let redactor = Redactor::new(&PiiConfig::default());
    for file in ["casual_chat_labelled.jsonl", "counsel_chat_labelled.jsonl"] {
        let samples = load(&root.join(file)).unwrap();
        let r = evaluate(&redactor, file, &samples);
        let names = &r.by_kind[&PiiKind::Name];
        assert!(
            names.precision >= 0.9 && names.recall >= 0.9,
            "{file}: {names:?}\nmisses {:#?}\nfalse alarms {:#?}",
            r.misses,
            r.false_alarms
        );
    }
}

#[test]
fn a_conversation_is_scored_as_idx_redacts_it() {
    let sample = |text: &str, names: &[&str]| Sample {
        text: text.into(),
        pii: names
            .iter()
            .map(|n| Label {
                kind: PiiKind::Name,
                value: n.to_string(),
            })
            .collect(),
        conversation: Some("c1".into()),
    };
    let samples = vec![
        sample("Hi John. How are you?", &["John"]),
        sample("I am sorry to hear that John. Mail me at a@b.io", &["John"]),
    ];
    let r = evaluate(&Redactor::new(&PiiConfig::default()), "c", &samples);
    assert_eq!(r.by_kind[&PiiKind::Name].correct, 2, "{r:?}");
    assert_eq!(r.by_kind[&PiiKind::Email].detected, 1);
}

#[test]
fn scoring_counts_misses_and_false_alarms() {
    let samples = vec![
        Sample {
            text: "mail a@b.io, call 988".into(),
            pii: vec![
                Label {
                    kind: PiiKind::Email,
                    value: "a@b.io".into(),
                },
                Label {
                    kind: PiiKind::Name,
                    value: "Zed".into(),
                },
            ],
            conversation: None,
        },
        Sample {
            text: "I'm Bob".into(),
            pii: vec![],
            conversation: None,
        },
    ];
    let r = evaluate(&Redactor::new(&PiiConfig::default()), "t", &samples);
    assert_eq!(r.by_kind[&PiiKind::Email].correct, 1);
    assert_eq!(r.by_kind[&PiiKind::Name].expected, 1);
    assert_eq!(r.by_kind[&PiiKind::Name].detected, 1);
    assert_eq!(r.by_kind[&PiiKind::Name].correct, 0);
    assert_eq!(r.misses.len(), 1);
    assert_eq!(r.false_alarms.len(), 1);
    assert!((r.precision - 0.5).abs() < 1e-9);
}
