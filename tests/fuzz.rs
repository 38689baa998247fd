//! Property tests of every parser that takes input from outside: the `key=value` config form
//! (`--set`, URL pairs), the URL state parser, the JSON config reader (`--config`) and the
//! run-file reader of `plot`. Each runs at least 100 000 generated inputs (`FUZZ_CASES`
//! overrides): no input panics, and every error names a field.
#![cfg(not(target_arch = "wasm32"))]

use lora_one_lab::config::{Config, Preset};
use lora_one_lab::urlstate::{
    parse_query, parse_state, state_pairs, to_query, View, KEYS, SWEEP_KEYS, TOY_KEYS,
};
use lora_one_lab::{CpuBackend, Experiment, Report};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::Value;
use std::sync::OnceLock;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn runner() -> TestRunner {
    TestRunner::new(PtConfig {
        cases: cases(),
        failure_persistence: None,
        ..PtConfig::default()
    })
}

/// Every name the config form accepts, and the page's own URL keys.
fn config_keys() -> Vec<String> {
    let mut v: Vec<String> = Preset::Spectral
        .config()
        .to_pairs()
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    for k in [
        "n",
        "spectrum",
        "rstar",
        "sigma",
        "optimizer",
        "lambda",
        "normalized",
        "seeds",
    ] {
        v.push(k.into());
    }
    v.sort();
    v.dedup();
    v
}

fn page_keys() -> Vec<String> {
    [
        "view", "embed", "large", "autoplay", "preset", "compute", "simulate",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(KEYS.iter().map(|s| s.to_string()))
    .chain(SWEEP_KEYS.iter().map(|s| s.to_string()))
    .chain(TOY_KEYS.iter().map(|s| s.to_string()))
    .chain(lora_one_lab::digits::FT_KEYS.iter().map(|s| s.to_string()))
    .chain(config_keys())
    .collect()
}

/// Values a hostile or careless user types: numbers of every size and form, NaN and infinities,
/// lists, markup and script, escapes, empty strings, long junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|x| x.to_string()),
        any::<i64>().prop_map(|x| x.to_string()),
        any::<u64>().prop_map(|x| x.to_string()),
        (0u32..5000).prop_map(|x| x.to_string()),
        (-1e3f64..1e3).prop_map(|x| format!("{x:e}")),
        prop::sample::select(vec![
            "",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "1e309",
            "-0",
            "0",
            "1",
            "true",
            "off",
            "18446744073709551616",
            "4294967296",
            "9e18",
            "0x10",
            "1_000",
            " 7 ",
            "1,,2",
            ",",
            "1e-3,1e-2",
            "vanilla,lora-one",
            "lora-ga",
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "javascript:alert(1)",
            "%00",
            "a=b&c=d",
            "relu",
            "linear",
            "residual",
            "gpu",
            "lab",
            "phase",
            "none",
            "1,2",
            "0.5,-0.5",
        ])
        .prop_map(String::from),
        prop::collection::vec(any::<f64>(), 0..12).prop_map(|v| v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")),
        "\\PC{0,40}",
        "[0-9eE.+,-]{0,24}",
    ]
}

fn key(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known),
        1 => "\\PC{0,12}",
        1 => prop::sample::select(vec!["", " d", "D", "d ", "<b>", "r_star\u{0}"]).prop_map(String::from),
    ]
}

/// `Config::set` then `validate`: never a panic; an error names the key it was given (or, from
/// validation, a field of the config) and says something.
#[test]
fn config_form_never_panics_and_names_the_field() {
    let keys = config_keys();
    let strategy = (
        prop::sample::select(Preset::ALL.to_vec()),
        prop::collection::vec((key(keys.clone()), value()), 1..8),
    );
    runner()
        .run(&strategy, |(preset, pairs)| {
            let mut c = preset.config();
            for (k, v) in &pairs {
                if let Err(e) = c.set(k, v) {
                    prop_assert!(
                        e.field == k.trim() || e.field == *k || keys.contains(&e.field),
                        "error for key `{k}` names `{}`",
                        e.field
                    );
                    prop_assert!(!e.message.is_empty());
                }
            }
            if let Err(e) = c.validate() {
                prop_assert!(
                    keys.contains(&e.field),
                    "validation names `{}`: {e}",
                    e.field
                );
                prop_assert!(!e.message.is_empty());
            }
            Ok(())
        })
        .unwrap();
}

fn query() -> impl Strategy<Value = String> {
    let pair = (key(page_keys()), value()).prop_map(|(k, v)| {
        // half encoded as the app writes, half raw as a user pastes
        if k.len() % 2 == 0 {
            to_query(&[(k, v)])
        } else {
            format!("{k}={v}")
        }
    });
    prop_oneof![
        prop::collection::vec(pair, 0..10).prop_map(|v| format!("?{}", v.join("&"))),
        "[?&=%+a-z0-9A-F<>\"' ]{0,80}",
        prop::collection::vec(
            prop::sample::select(vec![
                "view=lab",
                "view=phase",
                "view=sweep",
                "view=toy",
                "view=digits",
                "rank=99",
                "yaw=-400",
                "pitch=45",
                "d=7",
                "d=8",
                "%E0%A4%A",
                "%",
                "=",
                "&&",
                "embed",
                "compute=gpu",
                "alpha2=",
                "alpha2=1e-3,,",
                "seeds=0"
            ]),
            0..12
        )
        .prop_map(|v| v.join("&")),
    ]
}

/// The URL state: never a panic; every error line starts with the field it is about (a key of
/// the query or a field of the config); what the app writes back reads back the same.
#[test]
fn url_state_never_panics_names_the_field_and_round_trips() {
    let known = page_keys();
    runner()
        .run(&query(), |q| {
            let pairs = parse_query(&q);
            let s = parse_state(&pairs);
            for e in &s.errors {
                let named = |k: &String| {
                    e.strip_prefix(k.as_str())
                        .and_then(|rest| rest.strip_prefix(": "))
                        .is_some_and(|msg| !msg.is_empty())
                };
                prop_assert!(
                    pairs.iter().any(|(k, _)| named(k)) || known.iter().any(named),
                    "error `{e}` does not start with a key of {pairs:?}"
                );
                prop_assert!(
                    e.chars().count() < 400,
                    "error echoes too much: {}",
                    e.len()
                );
            }
            // what the page writes back into the address bar reads back as the same state
            let back = to_query(&state_pairs(&s));
            let s2 = parse_state(&parse_query(&back));
            prop_assert!(s2.errors.is_empty(), "{:?} from {back}", s2.errors);
            prop_assert_eq!(s2.view, s.view);
            prop_assert_eq!(s2.opts, s.opts);
            match s.view {
                View::Lab => {
                    prop_assert_eq!(&s2.lab, &s.lab);
                    prop_assert_eq!(s2.compute, s.compute);
                }
                View::Sweep => {
                    prop_assert_eq!(&s2.sweep, &s.sweep);
                    prop_assert_eq!(s2.compute, s.compute);
                }
                View::Toy => prop_assert_eq!(&s2.toy, &s.toy),
                View::Digits => prop_assert_eq!(&s2.digits, &s.digits),
                View::Phase => {
                    // the custom start is written to 4 decimals: the second trip is exact
                    let back2 = to_query(&state_pairs(&s2));
                    prop_assert_eq!(parse_state(&parse_query(&back2)).phase, s2.phase.clone());
                    prop_assert_eq!(s2.phase.start.is_some(), s.phase.start.is_some());
                }
            }
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        (0u32..3000).prop_map(Value::from),
        value().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,6}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Top-level keys of a document, with the config's own field names.
fn first_segment(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// The JSON string literals of `text` (even when the whole is not valid JSON), decoded: a key
/// written with escapes (`"\/"` is `/`) is named by its decoded form.
fn string_literals(text: &str) -> Vec<String> {
    text.char_indices()
        .filter(|&(_, c)| c == '"')
        .filter_map(|(i, _)| {
            serde_json::Deserializer::from_str(&text[i..])
                .into_iter::<String>()
                .next()
                .and_then(Result::ok)
        })
        .collect()
}

/// A key written with an escape (found by the fuzzer below): the error names its decoded form,
/// which the fuzzer's check finds among the text's string literals.
#[test]
fn json_config_error_names_an_escaped_key_decoded() {
    let text = r#"{"\/""#;
    let e = Config::from_json(text).unwrap_err();
    assert_eq!(e.field, "/");
    assert_eq!(string_literals(text), vec!["/".to_string()]);
}

/// The JSON config reader: never a panic; an error names `json` (not JSON at all) or the path of
/// the field it is about, whose first segment is a key of the document or a config field.
#[test]
fn json_config_reader_never_panics_and_names_the_field() {
    let base = serde_json::to_value(Preset::Spectral.config()).unwrap();
    let fields: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    let keys = config_keys();
    let doc = prop_oneof![
        // a valid config with some fields replaced, removed or added
        prop::collection::vec(
            (
                prop_oneof![prop::sample::select(fields.clone()), "\\PC{0,8}"],
                prop::option::of(json_value())
            ),
            1..5
        )
        .prop_map(move |edits| {
            let mut v = base.clone();
            let o = v.as_object_mut().unwrap();
            for (k, val) in edits {
                match val {
                    Some(x) => {
                        o.insert(k, x);
                    }
                    None => {
                        o.remove(&k);
                    }
                }
            }
            v.to_string()
        }),
        json_value().prop_map(|v| v.to_string()),
        "\\PC{0,60}",
        "[{}\\[\\]\":,0-9a-z ]{0,60}",
    ];
    runner()
        .run(&doc, |text| {
            if let Err(e) = Config::from_json(&text) {
                let head = first_segment(&e.field);
                let in_doc = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.as_object()
                            .map(|o| o.contains_key(head) || o.contains_key(&e.field))
                    })
                    .unwrap_or(false)
                    || text.contains(&serde_json::to_string(head).unwrap())
                    || text.contains(&serde_json::to_string(&e.field).unwrap())
                    || string_literals(&text)
                        .iter()
                        .any(|l| l == head || *l == e.field);
                prop_assert!(
                    e.field == "json"
                        || in_doc
                        || fields.iter().any(|f| f == head)
                        || keys.iter().any(|f| f == head),
                    "error names `{}`: {e}",
                    e.field
                );
                prop_assert!(!e.message.is_empty());
            }
            Ok(())
        })
        .unwrap();
}

/// A real run file: a short run of every init, as `lora-one-lab run --out FILE.json` writes it.
fn run_file() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let mut c = Preset::Spectral.config();
        c.d = 20;
        c.k = 18;
        c.steps = 6;
        c.record_every = 2;
        let mut e = Experiment::new(&c).unwrap();
        pollster::block_on(e.run_to_end(&mut CpuBackend::new(), 100, |_| {})).unwrap();
        serde_json::to_value(e.report()).unwrap()
    })
}

/// Every path to a node of a JSON document.
fn paths(v: &Value, at: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let mut p = at.clone();
                p.push(Value::String(k.clone()));
                paths(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = at.clone();
                p.push(Value::from(i));
                paths(x, p, out);
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The run-file reader of `plot`: a real run file with any of its nodes replaced by anything,
/// or cut short: never a panic; an error names `json` or the path of the bad field.
#[test]
fn run_file_reader_never_panics_and_names_the_field() {
    let base = run_file().clone();
    assert!(
        Report::from_json(&base.to_string()).is_ok(),
        "the real run file reads"
    );
    let mut all = Vec::new();
    paths(&base, Vec::new(), &mut all);
    let n = all.len();
    let doc = prop_oneof![
        prop::collection::vec((0..n, json_value()), 1..4).prop_map(move |edits| {
            let mut v = base.clone();
            for (i, x) in edits {
                if let Some(node) = node_mut(&mut v, &all[i]) {
                    *node = x;
                }
            }
            v.to_string()
        }),
        (0usize..4000).prop_map(|cut| {
            let t = run_file().to_string();
            t.chars().take(cut).collect()
        }),
    ];
    runner()
        .run(&doc, |text| {
            if let Err(e) = Report::from_json(&text) {
                prop_assert!(!e.field.is_empty());
                let head = first_segment(&e.field);
                let top = run_file().as_object().unwrap();
                prop_assert!(
                    e.field == "json" || top.contains_key(head),
                    "error names `{}`: {e}",
                    e.field
                );
                prop_assert!(!e.message.is_empty());
            }
            Ok(())
        })
        .unwrap();
}

/// The sweep axis form (`--x KEY=SPEC`): never a panic; an error names the key or `sweep`.
#[test]
fn sweep_axis_form_never_panics_and_names_the_field() {
    let spec = prop_oneof![
        value(),
        (
            prop::sample::select(vec!["log", "lin", "exp", ""]),
            value(),
            value(),
            value()
        )
            .prop_map(|(k, a, b, n)| format!("{k}:{a}:{b}:{n}")),
    ];
    let strategy = (key(config_keys()), spec, any::<bool>());
    runner()
        .run(&strategy, |(k, s, eq)| {
            let text = if eq { format!("{k}={s}") } else { s.clone() };
            match lora_one_lab::sweep::Axis::parse(&text) {
                Ok(a) => {
                    prop_assert!(!a.values.is_empty() && a.values.iter().all(|v| v.is_finite()));
                }
                Err(e) => {
                    prop_assert!(
                        e.field == "sweep" || text.trim_start().starts_with(e.field.as_str()),
                        "`{text}` → field `{}`",
                        e.field
                    );
                    prop_assert!(!e.message.is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
}
