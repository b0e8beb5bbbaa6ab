//! Unit tests of the classifier: every rule's own test cases, and behaviour across rules on
//! field names and values that are not the lab's (other languages, vendors and decoys).

use super::rules::TestKind;
use super::*;
use crate::inventory::Record;

fn fp() -> Fingerprinter {
    Fingerprinter::with_key([42; 32])
}

fn holding(container: &str, rows: Vec<Record>) -> Holding {
    Holding {
        name: container.to_string(),
        kind: "table",
        sample: rows,
        ..Holding::default()
    }
}

/// One column of values, one record per value.
fn column(container: &str, path: &str, values: &[&str]) -> Holding {
    holding(
        container,
        values
            .iter()
            .map(|v| vec![(path.to_string(), v.to_string())])
            .collect(),
    )
}

fn field<'a>(fields: &'a [Field], path: &str) -> &'a Field {
    fields
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no field {path}"))
}

fn cats_of(container: &str, path: &str, values: &[&str]) -> Vec<String> {
    let (fields, _) =
        Classifier::builtin().classify_holding(&column(container, path, values), &fp());
    field(&fields, path).categories.clone()
}

#[test]
fn builtin_rules_compile_and_cover_the_taxonomy() {
    let c = Classifier::try_builtin().expect("built-in rules");
    for cat in TAXONOMY {
        assert!(
            c.rules().iter().any(|r| r.category == *cat),
            "no rule for {cat}"
        );
    }
}

#[test]
fn every_rule_passes_its_own_test_cases() {
    let c = Classifier::builtin();
    let mut failures = Vec::new();
    for rule in c.rules() {
        let tp = rule
            .tests
            .iter()
            .filter(|t| t.kind == TestKind::TruePositive)
            .count();
        let neg = rule.tests.len() - tp;
        if tp == 0 || neg == 0 {
            failures.push(format!(
                "{}: needs true positives and near misses or decoys",
                rule.id
            ));
        }
        for t in &rule.tests {
            let rows = t
                .values
                .iter()
                .map(|v| {
                    let mut r: Record = vec![(t.path.clone(), v.clone())];
                    r.extend(t.siblings.iter().cloned());
                    r
                })
                .collect();
            let h = holding(t.container.as_deref().unwrap_or("t"), rows);
            let out = c.classify_holding_detailed(&h, &fp());
            let f = field(&out.fields, &t.path);
            let has = f.categories.iter().any(|x| x == rule.category);
            let want = t.kind == TestKind::TruePositive;
            if has != want {
                for tr in c.explain(&h).iter().filter(|x| x.path == t.path) {
                    eprintln!(
                        "  {} {} {:?}",
                        t.path,
                        tr.rule,
                        (tr.name, tr.schema, tr.values, tr.confidence)
                    );
                }
                failures.push(format!(
                    "{} {:?} {} {:?}: got {:?} ({})",
                    rule.id, t.kind, t.path, t.values, f.categories, f.confidence
                ));
            }
            // No test value may reach an output unmasked.
            for v in &t.values {
                if v.len() > 4 {
                    assert!(
                        !f.examples.iter().any(|e| e.contains(v.as_str())),
                        "{}: raw value in examples",
                        rule.id
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "rule test failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn names_in_other_languages_agree_with_values() {
    assert_eq!(
        cats_of(
            "kunden",
            "E-Mail-Adresse",
            &["k.schulz@web.de", "t.wagner@gmx.net"]
        ),
        ["identity.email"]
    );
    assert_eq!(
        cats_of(
            "clientes",
            "teléfono_móvil",
            &["+34 612 34 56 78", "+34 699 11 22 33"]
        ),
        ["identity.phone"]
    );
    assert_eq!(
        cats_of("pazienti", "peso_kg", &["71.5", "64.0", "88.2"]),
        ["health.body"]
    );
    assert_eq!(
        cats_of("pacientes", "altura", &["1.72", "1.64"]),
        ["health.body"]
    );
    assert_eq!(
        cats_of(
            "clients",
            "date_de_naissance",
            &["14/07/1979", "02/12/1991"]
        ),
        ["identity.birthdate"]
    );
    assert_eq!(
        cats_of("utenti", "codiceFiscale", &["RSSMRA85T10A562S"]),
        ["government.id"]
    );
}

#[test]
fn strong_validators_classify_without_a_name() {
    assert_eq!(
        cats_of(
            "x",
            "c7",
            &[
                "4111 1111 1111 1111",
                "5500 0055 5555 5559",
                "4012888888881881"
            ]
        ),
        ["financial.card"]
    );
    assert_eq!(
        cats_of("x", "f2", &["NL91ABNA0417164300", "BE68539007547034"]),
        ["financial.iban"]
    );
    assert_eq!(
        cats_of("x", "blob", &["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln"]),
        ["credential.jwt"]
    );
    assert_eq!(
        cats_of("x", "k", &["-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"]),
        ["credential.private_key"]
    );
    assert_eq!(
        cats_of(
            "x",
            "col3",
            &["$6$rounds=5000$saltsalt$Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXhmb29iYXJiYXp4"]
        ),
        ["credential.password_hash"]
    );
}

#[test]
fn shapes_alone_are_weak() {
    // UUIDs, MACs, IPs, numbers, short text: nothing without a name.
    for (path, values) in [
        (
            "ref",
            vec![
                "0d9f4c1e-3a2b-4c5d-8e6f-7a8b9c0d1e2f",
                "1d9f4c1e-3a2b-4c5d-8e6f-7a8b9c0d1e2f",
            ],
        ),
        ("col_a", vec!["3C:22:FB:12:34:56", "3C:22:FB:12:34:57"]),
        ("col_b", vec!["81.2.69.160", "81.2.69.161"]),
        ("col_c", vec!["72.5", "80.1"]),
        ("col_d", vec!["Mario Rossi", "Anna Verdi"]),
        ("col_e", vec!["+14155552671", "+442079460958"]),
        ("col_f", vec!["Zx81bK2pQ9rT4vW7yA0cD3fG6hJ8kL1m"]),
    ] {
        assert!(cats_of("x", path, &values).is_empty(), "{path}");
    }
}

#[test]
fn decoys_stay_unclassified() {
    for (container, path, values) in [
        ("logistics", "shipment_weight_lb", vec!["12.5", "3.2"]),
        (
            "ci",
            "git_sha",
            vec!["9fceb02d0ae598e95dc970b74767f19372d61af8"],
        ),
        (
            "ci",
            "commit",
            vec!["9fceb02d0ae598e95dc970b74767f19372d61af8"],
        ),
        (
            "api",
            "request_uuid",
            vec!["6f1c2d3e-4a5b-4c6d-9e8f-0a1b2c3d4e5f"],
        ),
        ("api", "traceId", vec!["4bf92f3577b34da6a3ce929d0e0e4736"]),
        ("wifi_stats", "ssid_seen_total", vec!["12", "40"]),
        ("wifi_stats", "numero_ssid", vec!["12", "40"]),
        ("users", "email_opens", vec!["3", "0"]),
        ("users", "phone_country", vec!["DE", "FR"]),
        ("fonts", "weight", vec!["400", "700"]),
        ("ml", "layer_weight", vec!["0.12", "1.5"]),
        ("releases", "version", vec!["1.4.2", "1.5.0"]),
        (
            "catalog",
            "product_name",
            vec!["Smart Plug Mini", "Door Sensor"],
        ),
        ("shop.orders", "gewicht_paket", vec!["2.5", "4.0"]),
        ("dns", "ttl", vec!["3600", "300"]),
    ] {
        assert!(
            cats_of(container, path, &values).is_empty(),
            "{container}.{path}"
        );
    }
}

#[test]
fn generic_leaves_take_the_container_name() {
    assert_eq!(
        cats_of(
            "db0:email:*",
            "value",
            &["ana@ejemplo.es", "jo@example.org"]
        ),
        ["identity.email"]
    );
    assert_eq!(
        cats_of(
            "db2:phone:*",
            "value",
            &["+49 30 901820", "+49 89 12345678"]
        ),
        ["identity.phone"]
    );
    assert!(cats_of("db0:stats:ssid_count:*", "value", &["12", "40"]).is_empty());
    assert!(cats_of("db0:visits:*", "value", &["12", "40"]).is_empty());
}

#[test]
fn siblings_of_the_same_object_are_context() {
    let rows: Vec<Record> = (0..5)
        .map(|i| {
            vec![
                (
                    "owner_name".into(),
                    format!("Person {}", ["Ann", "Bob", "Cy", "Di", "Ed"][i]),
                ),
                ("things[].hwaddr".into(), format!("f0:9f:c2:11:22:3{i}")),
                (
                    "things[].label".into(),
                    ["Porch", "Kitchen", "Cellar", "Attic", "Loft"][i].into(),
                ),
            ]
        })
        .collect();
    let (fields, _) = Classifier::builtin().classify_holding(&holding("inventory", rows), &fp());
    assert_eq!(field(&fields, "things[].label").categories, ["device.name"]);
    assert!(!field(&fields, "owner_name")
        .categories
        .contains(&"device.name".to_string()));
}

#[test]
fn specific_token_formats_suppress_the_generic_one() {
    let c = cats_of(
        "links",
        "access_token",
        &["Atza|IwEBIKq3fakeQq1bJx8m2LzK0pVwR7tY5uN3hS6dF9gA2cE4vB8nM1xZ0oP7lQ"],
    );
    assert_eq!(c, ["credential.oauth_token"]);
    let c = cats_of(
        "s",
        "auth_token",
        &["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.Zm9vYmFy"],
    );
    assert_eq!(c, ["credential.jwt"]);
}

#[test]
fn declared_types_are_weak_evidence() {
    let mut h = column("audit", "origin", &["81.2.69.160", "2a01:4f8:c17:b8f::2"]);
    assert!(Classifier::builtin()
        .classify_holding(&h, &fp())
        .1
        .is_empty());
    h.schema = vec![("origin".into(), "inet".into())];
    let (fields, cats) = Classifier::builtin().classify_holding(&h, &fp());
    assert_eq!(cats, ["network.ip"]);
    assert_eq!(fields[0].matched, 2);
    // A declared column with no sampled values is listed, unclassified on its name alone.
    let mut h = column("users", "email", &[]);
    h.schema = vec![("email".into(), "text".into())];
    let (fields, _) = Classifier::builtin().classify_holding(&h, &fp());
    assert_eq!(fields[0].seen, 0);
    assert!(fields[0].categories.is_empty());
}

#[test]
fn counts_examples_and_fingerprints() {
    let mut values: Vec<String> = (0..250).map(|i| format!("user{i}@example.com")).collect();
    values.push("not-an-address".into());
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let h = column("accounts", "email", &refs);
    let out = Classifier::builtin().classify_holding_detailed(&h, &fp());
    let f = &out.fields[0];
    assert_eq!(f.seen, MAX_VALUES as u64, "values per field are capped");
    assert_eq!(f.matched, MAX_VALUES as u64);
    assert_eq!(f.examples, ["u•••@e•••.com"; 3]);
    assert!(f.confidence >= 0.9 && f.confidence <= 0.99);
    let fps = &out.fingerprints[0];
    assert_eq!(fps.category, "identity.email");
    assert_eq!(fps.fingerprints.len(), MAX_VALUES);
    assert_eq!(
        fps.fingerprints.first().map(String::len),
        Some(fingerprint::FINGERPRINT_HEX)
    );
    // The same value under another key has another fingerprint.
    let other =
        Classifier::builtin().classify_holding_detailed(&h, &Fingerprinter::with_key([1; 32]));
    assert_ne!(other.fingerprints[0].fingerprints, fps.fingerprints);
}

#[test]
fn no_raw_value_of_a_classified_field_is_output() {
    let rows: Vec<Record> = vec![vec![
        ("email".into(), "maria.rossi@example.it".into()),
        ("telefono".into(), "+39 347 123 4567".into()),
        ("cc".into(), "4111111111111111".into()),
        (
            "token".into(),
            "ghp_R8d2KxW0qL5mN7vB3cJ9tY1uF4hG6sA2pE0z".into(),
        ),
        ("pwd".into(), "Tr0ub4dor&3".into()),
        ("peso".into(), "72.4".into()),
    ]];
    let out =
        Classifier::builtin().classify_holding_detailed(&holding("utenti", rows.clone()), &fp());
    let json = serde_json::to_string(&out.fields).unwrap()
        + &format!("{:?}", out.fingerprints)
        + &out.categories.join(",");
    for (path, v) in &rows[0] {
        let f = field(&out.fields, path);
        assert!(!f.categories.is_empty(), "{path} should be classified");
        assert!(!json.contains(v.as_str()), "{path}: raw value in output");
    }
}

#[test]
fn long_values_are_cut_at_the_cap() {
    let long = format!("-----BEGIN RSA PRIVATE KEY-----\n{}", "A".repeat(10_000));
    let out = Classifier::builtin()
        .classify_holding_detailed(&column("k", "private_key", &[&long]), &fp());
    assert_eq!(out.categories, ["credential.private_key"]);
    assert_eq!(out.bytes_examined, VALUE_CAP as u64);
}

#[test]
fn a_malformed_rules_file_is_an_error_naming_the_rule() {
    let broken = BUILTIN_RULES.replacen(
        "id = \"identity.phone\"\ncategory = \"identity.phone\"",
        "id = \"identity.phone\"\ncategory = \"identity.fone\"",
        1,
    );
    let e = Classifier::from_toml(&broken).unwrap_err();
    assert!(e.to_string().contains("identity.phone"), "{e}");
    let broken = BUILTIN_RULES.replacen(
        "{ id = \"card\", weight = 0.9, minority = true }",
        "{ id = \"cards\", weight = 0.9, minority = true }",
        1,
    );
    let e = Classifier::from_toml(&broken).unwrap_err();
    assert!(
        matches!(&e, RulesError::Detector { rule, .. } if rule == "financial.card"),
        "{e}"
    );
}

/// Whole records in other languages and shapes than the lab's, with decoys among them.
#[test]
fn records_in_other_languages() {
    let docs = [
        serde_json::json!({
            "vorname": "Anna", "nachname": "Schmidt", "geburtsdatum": "1984-03-12",
            "anschrift": {"strasse": "Hauptstraße 12", "plz": "10115", "ort": "Berlin"},
            "handy": "0171 2345678", "kundennummer": "100234", "seitenaufrufe": 123,
            "produktgewicht_g": 250, "deploy_sha": "3f786850e387550fdab836ed7e6dc881de23001b"
        }),
        serde_json::json!({
            "vorname": "Jonas", "nachname": "Weber", "geburtsdatum": "1991-11-30",
            "anschrift": {"strasse": "Lindenweg 3a", "plz": "80331", "ort": "München"},
            "handy": "+49 160 9876543", "kundennummer": "100235", "seitenaufrufe": 7,
            "produktgewicht_g": 1200, "deploy_sha": "9fceb02d0ae598e95dc970b74767f19372d61af8"
        }),
    ];
    let rows: Vec<Record> = docs
        .iter()
        .map(|d| crate::inventory::flatten_json(d, VALUE_CAP))
        .collect();
    let (fields, _) = Classifier::builtin().classify_holding(&holding("crm.kunden", rows), &fp());
    let got = |p: &str| field(&fields, p).categories.clone();
    assert_eq!(got("vorname"), ["identity.name"]);
    assert_eq!(got("nachname"), ["identity.name"]);
    assert_eq!(got("geburtsdatum"), ["identity.birthdate"]);
    assert_eq!(got("anschrift.strasse"), ["identity.address"]);
    assert_eq!(got("handy"), ["identity.phone"]);
    assert_eq!(got("kundennummer"), ["identity.user_id"]);
    for decoy in [
        "seitenaufrufe",
        "produktgewicht_g",
        "deploy_sha",
        "anschrift.plz",
    ] {
        assert!(got(decoy).is_empty(), "{decoy}: {:?}", got(decoy));
    }

    let rows: Vec<Record> = [
        (
            "Marie",
            "Dupont",
            "marie.dupont@orange.fr",
            "06 12 34 56 78",
            "1 85 05 78 006 084 91",
        ),
        (
            "Luc",
            "Martin",
            "luc.martin@free.fr",
            "07 98 76 54 32",
            "2 90 12 75 115 042 59",
        ),
    ]
    .iter()
    .map(|(p, n, e, t, nir)| {
        vec![
            ("prénom".to_string(), p.to_string()),
            ("nom".to_string(), n.to_string()),
            ("courriel".to_string(), e.to_string()),
            ("téléphone".to_string(), t.to_string()),
            ("numero_securite_sociale".to_string(), nir.to_string()),
        ]
    })
    .collect();
    let (fields, _) = Classifier::builtin().classify_holding(&holding("clients", rows), &fp());
    let got = |p: &str| field(&fields, p).categories.clone();
    assert_eq!(got("prénom"), ["identity.name"]);
    assert_eq!(got("nom"), ["identity.name"]);
    assert_eq!(got("courriel"), ["identity.email"]);
    assert_eq!(got("téléphone"), ["identity.phone"]);
    assert_eq!(got("numero_securite_sociale"), ["government.id"]);
}

#[test]
fn short_path_equality_agrees_with_byte_equality() {
    let base = "abcdefghijklmnopqrstuvwxyz0123456789";
    for n in 0..base.len() {
        let a = &base.as_bytes()[..n];
        assert!(super::same(a, a));
        for at in 0..n {
            let mut b = a.to_vec();
            b[at] ^= 1;
            assert!(!super::same(a, &b), "{n} {at}");
        }
        if n > 0 {
            assert!(!super::same(a, &a[..n - 1]));
        }
    }
}
