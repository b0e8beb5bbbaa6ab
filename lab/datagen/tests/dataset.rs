//! End-to-end checks of the dataset contract: what `emit` and `export` produce agrees with
//! `truth` (record counts and field paths), output is deterministic, and generated values pass
//! the validators a classifier would apply.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;

use leakscope_labgen::checks::{codice_fiscale_valid, iban_valid, luhn_valid};
use leakscope_labgen::layouts::{ddl, truth, Layout};
use leakscope_labgen::model::{Ctx, Need, User};
use leakscope_labgen::run::{emit, export, export_file_name};
use serde_json::{json, Map, Value};

const N: u64 = 500;

fn ctx(seed: u64, users: u64) -> Ctx {
    Ctx { seed, users }
}

fn truth_json(c: Ctx) -> Value {
    serde_json::to_value(truth(c)).unwrap()
}

fn emitted(c: Ctx, layout: Layout, container: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    emit(c, layout, container, &mut out).unwrap();
    out
}

fn containers(t: &Value, layout: Layout) -> Vec<Value> {
    t["layouts"][layout.name()].as_array().unwrap().clone()
}

/// RESP commands (`*n` arrays of bulk strings) as argument lists.
fn parse_resp(mut b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    fn line<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let end = b.windows(2).position(|w| w == b"\r\n").expect("CRLF");
        let l = &b[..end];
        *b = &b[end + 2..];
        l
    }
    let mut cmds = Vec::new();
    while !b.is_empty() {
        let head = line(&mut b);
        assert_eq!(head[0], b'*');
        let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let h = line(&mut b);
            assert_eq!(h[0], b'$');
            let len: usize = std::str::from_utf8(&h[1..]).unwrap().parse().unwrap();
            args.push(b[..len].to_vec());
            assert_eq!(&b[len..len + 2], b"\r\n");
            b = &b[len + 2..];
        }
        cmds.push(args);
    }
    cmds
}

/// Memcached `set` commands as (key, value).
fn parse_memcached(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let head = std::str::from_utf8(&b[..end]).unwrap().to_string();
        let parts: Vec<&str> = head.split(' ').collect();
        assert_eq!(parts.len(), 6, "{head}");
        assert_eq!(
            (parts[0], parts[2], parts[3], parts[5]),
            ("set", "0", "0", "noreply")
        );
        let len: usize = parts[4].parse().unwrap();
        let body = &b[end + 2..];
        assert_eq!(&body[len..len + 2], b"\r\n");
        out.push((parts[1].to_string(), body[..len].to_vec()));
        b = &body[len + 2..];
    }
    out
}

/// COPY text field: undo the escaping; `\N` is NULL.
fn unescape_copy(f: &str) -> Option<String> {
    if f == "\\N" {
        return None;
    }
    let mut s = String::new();
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next().unwrap() {
                't' => s.push('\t'),
                'n' => s.push('\n'),
                'r' => s.push('\r'),
                '\\' => s.push('\\'),
                o => panic!("unexpected escape \\{o}"),
            }
        } else {
            s.push(c);
        }
    }
    Some(s)
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// The records of one container as a reader of the store would see them, with their keys.
fn records(layout: Layout, c: &Value, data: &[u8]) -> Vec<(Option<String>, Value)> {
    match layout {
        Layout::Elasticsearch | Layout::Mongodb => data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| (None, serde_json::from_slice(l).unwrap()))
            .collect(),
        Layout::Postgresql | Layout::Mysql => {
            let cols: Vec<&str> = c["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            text(data)
                .lines()
                .map(|l| {
                    let fields: Vec<&str> = l.split('\t').collect();
                    assert_eq!(fields.len(), cols.len(), "{l}");
                    let mut m = Map::new();
                    for (k, f) in cols.iter().zip(fields) {
                        m.insert(
                            k.to_string(),
                            unescape_copy(f).map_or(Value::Null, Value::String),
                        );
                    }
                    (None, Value::Object(m))
                })
                .collect()
        }
        Layout::Redis => {
            let ty = c["type"].as_str().unwrap();
            parse_resp(data)
                .into_iter()
                .filter(|cmd| cmd[0] != b"SELECT")
                .map(|cmd| {
                    let key = text(&cmd[1]);
                    let v = match (text(&cmd[0]).as_str(), ty) {
                        ("HSET", "hash") => {
                            let mut m = Map::new();
                            for pair in cmd[2..].chunks(2) {
                                m.insert(text(&pair[0]), Value::String(text(&pair[1])));
                            }
                            Value::Object(m)
                        }
                        ("SET", "string") => string_value(&cmd[2]),
                        ("RPUSH", "list") => Value::Array(
                            cmd[2..]
                                .iter()
                                .map(|e| serde_json::from_slice(e).unwrap())
                                .collect(),
                        ),
                        (cmd, ty) => panic!("{cmd} for a {ty}"),
                    };
                    (Some(key), v)
                })
                .collect()
        }
        Layout::Memcached => parse_memcached(data)
            .into_iter()
            .map(|(k, v)| (Some(k), string_value(&v)))
            .collect(),
    }
}

/// A string value: JSON documents are parsed, anything else is `{"value": …}`.
fn string_value(v: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(v) {
        Ok(doc @ Value::Object(_)) => doc,
        _ => json!({ "value": text(v) }),
    }
}

fn collect_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) => collect_paths(v, &format!("{prefix}{k}."), out),
                    Value::Array(items) => {
                        for it in items {
                            collect_paths(it, &format!("{prefix}{k}[]."), out);
                        }
                    }
                    _ => {
                        out.insert(format!("{prefix}{k}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            for it in items {
                collect_paths(it, &format!("{prefix}[]."), out);
            }
        }
        _ => panic!("record is not an object or list: {v}"),
    }
}

fn truth_paths(c: &Value) -> BTreeSet<String> {
    c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

fn pattern_matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix) && key.len() > prefix.len(),
        None => key == pattern,
    }
}

#[test]
fn truth_counts_and_paths_match_what_is_emitted() {
    for users in [0, 1, 7, N] {
        let c = ctx(11, users);
        let t = truth_json(c);
        assert_eq!(t["schema"], "leakscope.lab-truth/v1");
        assert_eq!(t["seed"], 11);
        assert_eq!(t["users"], users);
        for layout in Layout::ALL {
            for ct in containers(&t, layout) {
                let name = ct["name"].as_str().unwrap();
                let data = emitted(c, layout, Some(name));
                let recs = records(layout, &ct, &data);
                assert_eq!(
                    recs.len() as u64,
                    ct["records"].as_u64().unwrap(),
                    "{} {name} (users={users})",
                    layout.name()
                );
                let mut seen = BTreeSet::new();
                for (key, v) in &recs {
                    collect_paths(v, "", &mut seen);
                    if let Some(k) = key {
                        assert!(
                            pattern_matches(ct["pattern"].as_str().unwrap(), k),
                            "{k} vs {name}"
                        );
                    }
                }
                let expected = truth_paths(&ct);
                if matches!(layout, Layout::Postgresql | Layout::Mysql) {
                    // Columns exist even in an empty table.
                    let cols: BTreeSet<String> = ct["columns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(cols, expected, "{name}");
                    if recs.is_empty() {
                        continue;
                    }
                }
                assert_eq!(seen, expected, "{} {name} (users={users})", layout.name());
            }
        }
    }
}

#[test]
fn whole_layout_emits_of_key_value_stores_hold_every_container() {
    let c = ctx(3, N);
    let t = truth_json(c);
    let cmds = parse_resp(&emitted(c, Layout::Redis, None));
    let mut db = None;
    let mut per_container: BTreeMap<String, u64> = BTreeMap::new();
    let redis = containers(&t, Layout::Redis);
    for cmd in &cmds {
        if cmd[0] == b"SELECT" {
            db = Some(text(&cmd[1]).parse::<u64>().unwrap());
            continue;
        }
        let key = text(&cmd[1]);
        let owner = redis
            .iter()
            .find(|ct| {
                Some(ct["db"].as_u64().unwrap()) == db
                    && pattern_matches(ct["pattern"].as_str().unwrap(), &key)
            })
            .unwrap_or_else(|| panic!("{key} in db {db:?} belongs to no container"));
        *per_container
            .entry(owner["name"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for ct in &redis {
        let want = ct["records"].as_u64().unwrap();
        assert_eq!(
            per_container
                .get(ct["name"].as_str().unwrap())
                .copied()
                .unwrap_or(0),
            want,
            "{}",
            ct["name"]
        );
    }
    // Keys are unique: one command per key.
    let keys: HashSet<_> = cmds
        .iter()
        .filter(|c| c[0] != b"SELECT")
        .map(|c| c[1].clone())
        .collect();
    assert_eq!(
        keys.len(),
        cmds.iter().filter(|c| c[0] != b"SELECT").count()
    );

    let sets = parse_memcached(&emitted(c, Layout::Memcached, None));
    let total: u64 = containers(&t, Layout::Memcached)
        .iter()
        .map(|ct| ct["records"].as_u64().unwrap())
        .sum();
    assert_eq!(sets.len() as u64, total);
    assert_eq!(
        sets.iter().map(|(k, _)| k).collect::<HashSet<_>>().len(),
        sets.len()
    );
}

#[test]
fn output_is_deterministic() {
    for layout in Layout::ALL {
        for ct in containers(&truth_json(ctx(5, N)), layout) {
            let name = ct["name"].as_str().unwrap();
            let a = emitted(ctx(5, N), layout, Some(name));
            assert_eq!(a, emitted(ctx(5, N), layout, Some(name)), "{name}");
            if ct["records"].as_u64().unwrap() > 0 {
                assert_ne!(
                    a,
                    emitted(ctx(6, N), layout, Some(name)),
                    "{name} ignores the seed"
                );
            }
        }
    }
    // User i does not depend on how many users there are.
    for (layout, name) in [
        (Layout::Elasticsearch, "customers"),
        (Layout::Postgresql, "devices"),
    ] {
        let small = emitted(ctx(5, 100), layout, Some(name));
        let large = emitted(ctx(5, 3000), layout, Some(name));
        assert!(large.starts_with(&small), "{name}");
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("labgen-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn export_matches_emit_and_truth() {
    let c = ctx(21, N);
    let dir = temp_dir("export");
    export(c, &dir).unwrap();
    let t = truth_json(c);
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap();
    assert_eq!(on_disk, t);
    for layout in Layout::ALL {
        for ct in containers(&t, layout) {
            let name = ct["name"].as_str().unwrap();
            let container = leakscope_labgen::layouts::find(layout, name).unwrap();
            let file = dir.join(layout.name()).join(export_file_name(container));
            let exported: Vec<Value> = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(
                exported.len() as u64,
                ct["records"].as_u64().unwrap(),
                "{name}"
            );
            let mut seen = BTreeSet::new();
            exported
                .iter()
                .for_each(|v| collect_paths(v, "", &mut seen));
            if !exported.is_empty() {
                assert_eq!(seen, truth_paths(&ct), "{name}");
            }
            // The export is the emitted data read back: same values, typed where the store
            // types them.
            let from_emit: Vec<Value> = records(layout, &ct, &emitted(c, layout, Some(name)))
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            for (e, x) in from_emit.iter().zip(&exported) {
                assert!(same_value(e, x), "{name}: {e} vs {x}");
            }
        }
    }
    // Same seed, same bytes.
    let again = temp_dir("export-again");
    export(c, &again).unwrap();
    for layout in Layout::ALL {
        for entry in std::fs::read_dir(dir.join(layout.name())).unwrap() {
            let p = entry.unwrap().path();
            let q = again.join(layout.name()).join(p.file_name().unwrap());
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&q).unwrap(),
                "{}",
                p.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&again).unwrap();
}

/// Whether an emitted record (TSV fields are text) and its export (typed JSON) agree.
fn same_value(emitted: &Value, exported: &Value) -> bool {
    match (emitted, exported) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| same_value(v, w))
        }
        (Value::String(s), Value::Number(n)) => s.parse::<f64>().ok() == n.as_f64(),
        _ => emitted == exported,
    }
}

#[test]
fn sql_schema_matches_truth_columns() {
    let t = truth_json(ctx(1, 10));
    for layout in [Layout::Postgresql, Layout::Mysql] {
        let sql = ddl(layout).unwrap();
        for ct in containers(&t, layout) {
            let table = format!(
                "CREATE TABLE IF NOT EXISTS {}.{} (",
                ct.get("schema")
                    .unwrap_or(&ct["database"])
                    .as_str()
                    .unwrap(),
                ct["table"].as_str().unwrap()
            );
            let start = sql.find(&table).unwrap_or_else(|| panic!("{table}"));
            let body = &sql[start + table.len()..];
            let body = &body[..body.find("\n)").unwrap()];
            let cols: Vec<&str> = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("PRIMARY KEY"))
                .map(|l| l.split(' ').next().unwrap())
                .collect();
            let want: Vec<&str> = ct["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(cols, want, "{}", ct["name"]);
        }
    }
    assert!(ddl(Layout::Redis).is_err());
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    assert_eq!(acc & ((1 << bits) - 1), 0, "non-canonical base64url tail");
    out
}

/// The number plans (as libphonenumber encodes them) of the mobile ranges used.
fn phone_valid(country: &str, phone: &str) -> bool {
    if !phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +()-".contains(c))
    {
        return false;
    }
    let digits: Vec<u8> = phone
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let intl = phone.starts_with('+');
    let (cc, nsn): (&[u8], &[u8]) = match country {
        "US" if !intl => (&[1], &digits),
        _ if !intl => return false,
        "US" => digits.split_at(1),
        _ => digits.split_at(2),
    };
    let d = |k: usize| nsn.get(k).copied().unwrap_or(255);
    let len = nsn.len();
    match country {
        "US" => {
            cc == [1]
                && len == 10
                && (2..=9).contains(&d(0))
                && (2..=9).contains(&d(3))
                && !(d(4) == 1 && d(5) == 1)
                && !(d(3) == 5 && d(4) == 5 && d(5) == 5)
        }
        "DE" => {
            cc == [4, 9]
                && d(0) == 1
                && match (d(1), d(2)) {
                    (5, x) => x != 3 && x != 4 && len == 11,
                    (6, 0 | 2 | 3) => len == 10 || len == 11,
                    (7, 6) => len == 10 || len == 11,
                    (7, _) => len == 10,
                    _ => false,
                }
        }
        "IT" => cc == [3, 9] && d(0) == 3 && (1..=9).contains(&d(1)) && len == 10,
        "FR" => {
            cc == [3, 3]
                && len == 9
                && match (d(0), d(1), d(2)) {
                    (6, 0..=2 | 4..=8, _) => true,
                    (6, 3, x) => x <= 8,
                    (6, 9, x) => matches!(x, 5 | 8 | 9),
                    (7, 0, 0) => true,
                    (7, 3..=9, _) => true,
                    _ => false,
                }
        }
        "ES" => cc == [3, 4] && len == 9 && (d(0) == 6 || (d(0) == 7 && matches!(d(1), 1..=4 | 8))),
        "GB" => {
            cc == [4, 4]
                && len == 10
                && d(0) == 7
                && match (d(1), d(2), d(3)) {
                    (1..=3, _, _) => true,
                    (4, a, b) => a != 5 || matches!(b, 0 | 6 | 8 | 9),
                    (5, 0, b) => b <= 8,
                    (5, 2, b) => b != 4,
                    (5, 1 | 3..=9, _) => true,
                    (7, 0, b) => b >= 1,
                    (7, 1..=7, _) => true,
                    (7, 8, b) => b != 1,
                    (7, 9, b) => b != 7,
                    (8, 0 | 1 | 4..=9, _) => true,
                    (8, 2 | 3, b) => b <= 8,
                    (9, 0 | 2 | 4..=9, _) => true,
                    (9, 1, b) => b != 1,
                    (9, 3, b) => b != 7,
                    _ => false,
                }
        }
        _ => false,
    }
}

#[test]
fn generated_values_pass_their_validators() {
    let c = ctx(77, 2000);
    let docs = records(
        Layout::Elasticsearch,
        &Value::Null,
        &emitted(c, Layout::Elasticsearch, Some("customers")),
    );
    let mut emails = HashSet::new();
    let mut devices = HashSet::new();
    let mut countries = BTreeMap::new();
    for (_, d) in &docs {
        let country = d["country"].as_str().unwrap();
        *countries.entry(country.to_string()).or_insert(0) += 1;
        let phone = d["phone"].as_str().unwrap();
        assert!(phone_valid(country, phone), "{country} {phone}");
        let email = d["email"].as_str().unwrap();
        assert!(
            email.contains('@') && email.is_ascii() && !email.contains(' '),
            "{email}"
        );
        assert!(emails.insert(email.to_string()), "duplicate {email}");
        let token = d["app"]["api_token"].as_str().unwrap();
        assert_eq!(b64url_decode(token).len(), 32, "{token}");
        let ip: std::net::IpAddr = d["last_login_ip"].as_str().unwrap().parse().unwrap();
        if let std::net::IpAddr::V4(v4) = ip {
            assert!(
                !v4.is_private() && !v4.is_loopback() && !v4.is_multicast() && !v4.is_link_local(),
                "{v4}"
            );
        }
        assert!(!d["wifi_ssid"].as_str().unwrap().is_empty());
        for dev in d["devices"].as_array().unwrap() {
            let id = dev["device_id"].as_str().unwrap();
            assert!(
                id.len() == 12
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                "{id}"
            );
            assert!(devices.insert(id.to_string()), "duplicate {id}");
            let mac = dev["mac"].as_str().unwrap();
            assert!(
                mac.len() == 17 && mac.split(':').all(|p| u8::from_str_radix(p, 16).is_ok()),
                "{mac}"
            );
            let fw: Vec<&str> = dev["firmware_version"]
                .as_str()
                .unwrap()
                .split('.')
                .collect();
            assert!(fw.len() == 4 && fw.iter().all(|p| p.parse::<u32>().is_ok()));
        }
        if let Some(a) = d.get("alexa") {
            assert!(a["access_token"].as_str().unwrap().starts_with("Atza|IwEB"));
            assert!(a["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with("Atzr|IwEB"));
            assert!(a["access_token"].as_str().unwrap().len() > 290);
        }
        if let Some(s) = d.get("scale") {
            let f = |k: &str| s[k].as_f64().unwrap();
            assert!((150.0..=200.0).contains(&f("height_cm")));
            assert!((45.0..=130.0).contains(&f("weight_kg")));
            assert!((0.80..=1.40).contains(&f("bone_density")));
            assert!((8.0..=40.0).contains(&f("body_fat_pct")));
            assert!((40.0..=180.0).contains(&f("protein_g")));
        }
    }
    assert_eq!(countries.len(), 6, "{countries:?}");

    let users = records(
        Layout::Postgresql,
        &truth_json(c)["layouts"]["postgresql"][0],
        &emitted(c, Layout::Postgresql, Some("users")),
    );
    for (_, u) in &users {
        let h = u["password_hash"].as_str().unwrap();
        assert!(h.starts_with("$2b$12$") && h.len() == 60, "{h}");
    }

    let t = truth_json(c);
    let payments_ct = containers(&t, Layout::Mysql)
        .into_iter()
        .find(|x| x["name"] == "billing.payments")
        .unwrap();
    let payments = records(
        Layout::Mysql,
        &payments_ct,
        &emitted(c, Layout::Mysql, Some("billing.payments")),
    );
    assert!(!payments.is_empty());
    for (_, p) in &payments {
        let card = p["card_number"].as_str().unwrap();
        assert!(luhn_valid(card), "{card}");
        assert!(
            card.starts_with('4') || ("51".."56").contains(&&card[..2]),
            "{card}"
        );
        let exp = p["card_expiry"].as_str().unwrap();
        assert!(exp.len() == 5 && exp.as_bytes()[2] == b'/');
    }

    let clienti_ct = containers(&t, Layout::Postgresql)
        .into_iter()
        .find(|x| x["table"] == "clienti")
        .unwrap();
    let clienti = records(
        Layout::Postgresql,
        &clienti_ct,
        &emitted(c, Layout::Postgresql, Some("clienti")),
    );
    assert_eq!(clienti.len(), 100);
    for (_, k) in &clienti {
        assert!(
            codice_fiscale_valid(k["codice_fiscale"].as_str().unwrap()),
            "{}",
            k["codice_fiscale"]
        );
        assert!(iban_valid(k["iban"].as_str().unwrap()), "{}", k["iban"]);
        assert!(
            phone_valid("IT", k["telefono"].as_str().unwrap()),
            "{}",
            k["telefono"]
        );
        // The codice fiscale encodes the birth date.
        let birth = k["data_nascita"].as_str().unwrap();
        assert_eq!(&k["codice_fiscale"].as_str().unwrap()[6..8], &birth[2..4]);
    }

    let sessions = parse_resp(&emitted(c, Layout::Redis, Some("db0:sess:*")));
    assert!(sessions.len() > 1);
    for cmd in sessions.iter().filter(|c| c[0] == b"SET") {
        let s: Value = serde_json::from_slice(&cmd[2]).unwrap();
        let jwt = s["jwt"].as_str().unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let payload: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
        assert_eq!(payload["sub"], s["user_id"]);
        assert!(payload["exp"].as_i64().unwrap() > payload["iat"].as_i64().unwrap());
        assert_eq!(parts[2].len(), 43);
        assert_eq!(b64url_decode(parts[2]).len(), 32);
    }

    let orders = records(
        Layout::Elasticsearch,
        &Value::Null,
        &emitted(c, Layout::Elasticsearch, Some("orders")),
    );
    let mut order_ids = HashSet::new();
    for (_, o) in &orders {
        let w = o["shipment_weight_kg"].as_f64().unwrap();
        assert!((0.2..=3.5).contains(&w), "{w}");
        assert!(order_ids.insert(o["order_id"].as_str().unwrap().to_string()));
    }
    let builds = records(
        Layout::Elasticsearch,
        &Value::Null,
        &emitted(c, Layout::Elasticsearch, Some("firmware_builds")),
    );
    for (_, b) in &builds {
        let sha = b["build_sha"].as_str().unwrap();
        assert!(
            sha.len() == 40
                && sha
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
    }
}

#[test]
fn ids_stay_unique_at_scale() {
    let c = ctx(1, 60_000);
    let need = Need {
        devices: true,
        ..Need::default()
    };
    let mut u = User::default();
    let mut emails = HashSet::new();
    let mut devices = HashSet::new();
    for i in 0..c.users {
        u.fill(c, i, need);
        assert!(emails.insert(u.email.clone()), "{}", u.email);
        for d in u.devices() {
            assert!(devices.insert(d.device_id.clone()), "{}", d.device_id);
        }
    }
}

#[test]
fn cli_follows_the_documented_interface() {
    let bin = env!("CARGO_BIN_EXE_leakscope-labgen");
    let out = Command::new(bin)
        .args(["truth", "--users", "50", "--seed", "4"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t, truth_json(ctx(4, 50)));

    let out = Command::new(bin)
        .args([
            "emit",
            "--users",
            "50",
            "--seed",
            "4",
            "--layout",
            "mysql",
            "--container",
            "billing.payments",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        emitted(ctx(4, 50), Layout::Mysql, Some("billing.payments"))
    );

    let out = Command::new(bin)
        .args([
            "emit",
            "--users",
            "5",
            "--seed",
            "4",
            "--layout",
            "postgresql",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a SQL emit needs --container");
    let out = Command::new(bin)
        .args(["schema", "--layout", "postgresql"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("CREATE SCHEMA IF NOT EXISTS public;"));
}
