//! The config contract: the documented example loads, mistakes fail with the field named.

use meshsync_config::{Config, ConfigError, Engine};

const EXAMPLE: &str = r#"
[peer]
id = "a"
[nats]
url = "nats://127.0.0.1:4222"
[database]
engine = "postgres"
url = "postgres://postgres@127.0.0.1:5432/app"
tables = ["public.items"]
"#;

fn field_of(text: &str) -> String {
    match Config::from_toml(text, "test.toml") {
        Err(ConfigError::Invalid { source, .. }) => source.field,
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn the_documented_example_loads() {
    let c = Config::from_toml(EXAMPLE, "test.toml").unwrap();
    assert_eq!(c.peer.id, "a");
    assert_eq!(c.database.engine, Engine::Postgres);
    assert_eq!(c.nats.domain, None);
    assert_eq!(c.clock.future_bound_ms, 500);
}

#[test]
fn the_shipped_example_files_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut n = 0;
    let entries = ["docs/examples", "compose/peers"]
        .into_iter()
        .flat_map(|d| std::fs::read_dir(format!("{root}/{d}")).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "example configs missing from docs/examples or compose/peers"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let text = EXAMPLE.replace("[peer]\nid = \"a\"", "[peer]\nid = \"a\"\nidd = \"b\"");
    match Config::from_toml(&text, "test.toml") {
        Err(ConfigError::Parse { source, .. }) => assert!(source.to_string().contains("idd")),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn each_rule_names_its_field() {
    assert_eq!(
        field_of(&EXAMPLE.replace("id = \"a\"", "id = \"a.b\"")),
        "peer.id"
    );
    assert_eq!(
        field_of(&EXAMPLE.replace("nats://127", "http://127")),
        "nats.url"
    );
    assert_eq!(
        field_of(&EXAMPLE.replace("postgres://postgres@", "mysql://root@")),
        "database.url"
    );
    assert_eq!(
        field_of(&EXAMPLE.replace("[\"public.items\"]", "[]")),
        "database.tables"
    );
    assert_eq!(
        field_of(&EXAMPLE.replace("[\"public.items\"]", "[\"items\"]")),
        "database.tables[0]"
    );
    assert_eq!(
        field_of(&EXAMPLE.replace("[\"public.items\"]", "[\"public.a\", \"public.a\"]")),
        "database.tables[1]"
    );
    let domain = EXAMPLE.replace("[database]", "domain = \"a.b\"\n[database]");
    assert_eq!(field_of(&domain), "nats.domain");
    let replicas = EXAMPLE.replace("[database]", "replicas = 2\n[database]");
    assert_eq!(field_of(&replicas), "nats.replicas");
    let cert_alone = EXAMPLE.replace("[database]", "tls_cert_file = \"/c.pem\"\n[database]");
    assert_eq!(field_of(&cert_alone), "nats.tls_cert_file");
    let key_alone = EXAMPLE.replace("[database]", "tls_key_file = \"/k.pem\"\n[database]");
    assert_eq!(field_of(&key_alone), "nats.tls_key_file");
    let clock = format!("{EXAMPLE}\n[clock]\nfuture_bound_ms = 0\n");
    assert_eq!(field_of(&clock), "clock.future_bound_ms");
}

#[test]
fn errors_do_not_leak_passwords() {
    let text = EXAMPLE.replace("postgres://postgres@", "mysql://app:hunter2@");
    let err = Config::from_toml(&text, "test.toml").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[test]
fn merge_policies_load_and_must_name_replicated_tables() {
    let with_merge = format!(
        "{EXAMPLE}\n[merge]\ndefault = \"lww\"\nsensitive = [\"public.items\"]\n\
         [merge.tables.\"public.items\"]\npolicy = \"lww-column\"\n\
         columns = {{ stock = \"counter\", tags = \"set-union\" }}\n"
    );
    let c = Config::from_toml(&with_merge, "test.toml").unwrap();
    assert_eq!(c.merge.default, "lww");
    let items = &c.merge.tables["public.items"];
    assert_eq!(items.policy.as_deref(), Some("lww-column"));
    assert_eq!(items.columns["stock"], "counter");
    assert_eq!(
        Config::from_toml(EXAMPLE, "t.toml").unwrap().merge.default,
        "lww-column",
        "column-level LWW is the default"
    );
    let stray = format!("{EXAMPLE}\n[merge.tables.\"public.other\"]\npolicy = \"lww\"\n");
    assert_eq!(field_of(&stray), "merge.tables.public.other");
    let stray = format!("{EXAMPLE}\n[merge]\nsensitive = [\"public.other\"]\n");
    assert_eq!(field_of(&stray), "merge.sensitive.public.other");
}
