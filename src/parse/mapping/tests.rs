use super::*;
use serde_json::json;

const TOML: &str = r#"
version = 1

[[mapping]]
name = "qa"
keys = ["**/qa/*.csv"]
columns = { prompt = ["title", "question"], response = "answer" }
attributes = ["votes", "/meta/topic"]
session = "thread"
"#;

fn one(toml_entry: &str) -> Arc<Mapping> {
    let text = format!("version = 1\n[[mapping]]\nname = \"m\"\nkeys = [\"*\"]\n{toml_entry}");
    Mappings::parse(&text, "test")
        .unwrap()
        .for_key("x")
        .unwrap()
}

fn roles(v: &Value) -> Vec<(String, String)> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

#[test]
fn declared_columns_become_a_conversation_with_attributes_and_a_session() {
    let m = Mappings::parse(TOML, "test").unwrap();
    assert!(m.for_key("data/other.csv").is_none());
    let qa = m.for_key("x/qa/a.csv").unwrap();
    let out = qa
        .apply(
            json!({"title": "Sleep", "question": "I can't sleep.", "answer": "Try this.",
            "votes": 3, "meta": {"topic": "insomnia"}, "thread": "t1"}),
        )
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[
            ("user", "Sleep\n\nI can't sleep."),
            ("assistant", "Try this.")
        ])
    );
    assert_eq!(
        out.meta.attributes,
        vec![
            ("votes".to_string(), "3".to_string()),
            ("meta/topic".to_string(), "\"insomnia\"".to_string())
        ]
    );
    let same_thread = qa
        .apply(json!({"question": "Q2", "answer": "A2", "thread": "t1"}))
        .unwrap();
    assert!(out.meta.session.is_some());
    assert_eq!(out.meta.session, same_thread.meta.session);
    // A missing title is left out; a missing answer or session names the field.
    let err = qa
        .apply(json!({"question": "Q", "thread": "t"}))
        .unwrap_err();
    assert!(err.contains("`answer`") && err.contains("`qa`"), "{err}");
    let err = qa
        .apply(json!({"question": "Q", "answer": "A"}))
        .unwrap_err();
    assert!(err.contains("session field `thread`"), "{err}");
}

#[test]
fn message_lists_map_roles_many_to_one() {
    let m = one(
        "columns = { messages = \"turns\", system = \"sys\" }\n\
         tags = { role_tag = \"who\", content_tag = \"text\", user_tag = [\"client\", \"patient\"], assistant_tag = \"coach\" }",
    );
    let out = m
        .apply(json!({"sys": "Be kind.", "turns": [
            {"who": "client", "text": "hi"}, {"who": "coach", "text": "hello"},
            {"who": "patient", "text": "bye"}]}))
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[
            ("system", "Be kind."),
            ("user", "hi"),
            ("assistant", "hello"),
            ("user", "bye")
        ])
    );
    let err = m
        .apply(json!({"turns": [{"who": "narrator", "text": "x"}]}))
        .unwrap_err();
    assert!(
        err.contains("turns[0]") && err.contains("narrator"),
        "{err}"
    );
    let err = m.apply(json!({"turns": [{"who": "coach"}]})).unwrap_err();
    assert!(err.contains("has no `text`"), "{err}");
}

#[test]
fn speaker_order_and_nested_groups() {
    let m = one(
        "columns = { messages = \"dialogue\" }\n\
         tags = { role_tag = \"speaker\", content_tag = \"utterance\", speaker_order = true, group_tag = \"utterances\" }",
    );
    let out = m
        .apply(json!({"dialogue": [
            {"speaker": 7, "utterances": ["I feel low.", {"utterance": "Since May."}]},
            {"speaker": 3, "utterances": ["That sounds hard."]},
            {"speaker": 7, "utterances": ["Yes."]}]}))
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[
            ("user", "I feel low."),
            ("user", "Since May."),
            ("assistant", "That sounds hard."),
            ("user", "Yes.")
        ])
    );
    let err = m
        .apply(json!({"dialogue": [{"speaker": 1, "utterances": ["a"]}, {"speaker": 2, "utterances": ["b"]}, {"speaker": 3, "utterances": ["c"]}]}))
        .unwrap_err();
    assert!(err.contains("third speaker"), "{err}");
    // Lists nested directly in the list are groups too.
    let flat = one("columns = { messages = \"m\" }\ntags = { speaker_order = true, role_tag = \"s\", content_tag = \"t\" }");
    let out = flat
        .apply(json!({"m": [[{"s": "a", "t": "one"}, {"s": "a", "t": "two"}], [{"s": "b", "t": "three"}]]}))
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[("user", "one"), ("user", "two"), ("assistant", "three")])
    );
}

#[test]
fn a_prompt_template_joins_columns_into_one_message() {
    let m = one(
        "columns = { prompt_template = \"[{topic}] {/q/title}: {/q/text} {{sic}}\", response = \"a\" }",
    );
    let out = m
        .apply(json!({"topic": "sleep", "q": {"title": "Up at 3", "text": "Why?"}, "a": "Stress."}))
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[
            ("user", "[sleep] Up at 3: Why? {sic}"),
            ("assistant", "Stress.")
        ])
    );
    let err = m
        .apply(json!({"q": {"title": "t", "text": "x"}, "a": "y"}))
        .unwrap_err();
    assert!(err.contains("field `topic`"), "{err}");
}

#[test]
fn preference_kto_and_history() {
    let pref = one("columns = { prompt = \"q\", chosen = \"good\", rejected = \"bad\" }");
    let out = pref
        .apply(json!({"q": "Q", "good": "G", "bad": "B"}))
        .unwrap();
    let c = crate::parse::formats::detect(out.value).unwrap();
    assert_eq!(c.kind, crate::model::RecordKind::Preference);
    assert_eq!(c.rejected.unwrap()[0].content, "B");
    let kto = one("columns = { prompt = \"q\", response = \"a\", kto_tag = \"ok\" }");
    for (label, expected) in [(json!(true), true), (json!("0"), false), (json!(1), true)] {
        let out = kto.apply(json!({"q": "Q", "a": "A", "ok": label})).unwrap();
        let c = crate::parse::formats::detect(out.value).unwrap();
        assert_eq!(
            (c.kind, c.label),
            (crate::model::RecordKind::Kto, Some(expected))
        );
    }
    assert!(kto
        .apply(json!({"q": "Q", "a": "A", "ok": "maybe"}))
        .unwrap_err()
        .contains("not true or false"));
    let hist = one("columns = { prompt = \"q\", response = \"a\", history = \"h\" }");
    let out = hist
        .apply(json!({"q": "Q2", "a": "A2", "h": [["Q1", "A1"]]}))
        .unwrap();
    assert_eq!(
        roles(&out.value),
        pairs(&[
            ("user", "Q1"),
            ("assistant", "A1"),
            ("user", "Q2"),
            ("assistant", "A2")
        ])
    );
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    for bad in [
        "version = 2",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = []\ncolumns = { prompt = \"p\", response = \"r\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { response = \"r\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"[\"]\ncolumns = { prompt = \"p\", response = \"r\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", answer = \"a\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", chosen = \"c\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { messages = \"m\", prompt = \"p\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\nformat = \"xlsx\"\ncolumns = { messages = \"m\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\nrecords = \"rows\"\ncolumns = { messages = \"m\" }",
        "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", response = \"r\" }\ntags = { role_tag = \"r\" }",
    ] {
        let err = Mappings::parse(bad, "my/sources.toml").unwrap_err().to_string();
        assert!(err.contains("my/sources.toml"), "{bad}: {err}");
    }
    let a = Mappings::parse(TOML, "a").unwrap();
    let b = Mappings::parse(&TOML.replace("answer", "reply"), "b").unwrap();
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), Mappings::parse(TOML, "c").unwrap().digest());
    assert!(Mappings::builtin()
        .for_key("data/counsel-chat/x.csv")
        .is_some());
}
