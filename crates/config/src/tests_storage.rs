//! `[storage]`: the embedded default, cluster mode on Redis, and the PostgreSQL seam.
use super::*;
use std::collections::HashMap;
use std::path::Path;

const FILE: &str = "callgate.toml";

const POOL: &str = "[[pools]]\nname = \"vapi\"\nlimit = 10\n";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, Some(Path::new(FILE)))
}

/// Refused with exactly one problem: `field`, on the line holding `at`, saying `message`.
fn refused(text: &str, field: &str, at: &str, message: &str) {
    let errs = load(text).expect_err("accepted").errors;
    assert_eq!(errs.len(), 1, "{}", ConfigErrors { errors: errs.clone() });
    let e = &errs[0];
    let line = text.lines().position(|l| l.contains(at)).map(|i| i + 1);
    assert_eq!((e.field.as_str(), e.line), (field, line), "{e}");
    assert!(e.message.contains(message), "`{}` lacks `{message}`", e.message);
}

#[test]
fn without_a_storage_section_the_ledger_is_embedded() {
    let c = load(POOL).unwrap();
    assert!(!c.storage.clustered());
    assert_eq!(c.storage.ledger_store(&HashMap::new()).unwrap(), LedgerStore::Embedded);
    assert_eq!(c.storage.database_url(&HashMap::new()).unwrap(), None);
    assert_eq!(c.storage.domain, "default");
}

#[test]
fn cluster_mode_takes_a_redis_url_a_domain_and_a_database() {
    let text = format!(
        "{POOL}on_redis_unavailable = \"fail_closed\"\n[storage]\nledger = \"redis://:pw@10.0.0.5:6379/0\"\n\
         database = \"postgres://callgate@db:5432/callgate\"\ndomain = \"acct-1\"\non_redis_unavailable = \"fail_closed\"\n"
    );
    let c = load(&text).unwrap();
    assert!(c.storage.clustered());
    let env = HashMap::new();
    assert_eq!(c.storage.ledger_store(&env).unwrap(), LedgerStore::Redis("redis://:pw@10.0.0.5:6379/0".into()));
    assert_eq!(c.storage.database_url(&env).unwrap().as_deref(), Some("postgres://callgate@db:5432/callgate"));
    assert_eq!(c.pools[0].on_redis_unavailable, Some(RedisUnavailable::FailClosed));
    // Debug output never shows a password.
    assert!(!format!("{:?}", c.storage).contains("pw"), "{:?}", c.storage);
}

#[test]
fn urls_can_come_from_the_environment_and_a_missing_variable_is_named() {
    let text = format!("{POOL}[storage]\nledger_env = \"CG_REDIS\"\ndatabase_env = \"CG_PG\"\n");
    let c = load(&text).unwrap();
    assert!(c.storage.clustered());
    let env: HashMap<String, String> = [("CG_REDIS", "redis://127.0.0.1:6379"), ("CG_PG", "postgresql://u:p@h/db")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    assert_eq!(c.storage.ledger_store(&env).unwrap(), LedgerStore::Redis("redis://127.0.0.1:6379".into()));
    assert_eq!(c.storage.database_url(&env).unwrap().as_deref(), Some("postgresql://u:p@h/db"));
    let none = HashMap::new();
    assert!(c.storage.ledger_store(&none).unwrap_err().contains("`CG_REDIS`"));
    assert!(c.storage.database_url(&none).unwrap_err().contains("`CG_PG`"));
    let bad: HashMap<String, String> = [("CG_REDIS".to_string(), "http://x".to_string())].into();
    assert!(c.storage.ledger_store(&bad).unwrap_err().contains("scheme `http`"));
}

#[test]
fn bad_storage_settings_are_refused_with_their_field_and_line() {
    refused(&format!("{POOL}[storage]\nledger = \"memcached://x\"\n"), "storage.ledger", "memcached", "Redis URL");
    refused(&format!("{POOL}[storage]\nledger = \"rediss://x:6380\"\n"), "storage.ledger", "rediss", "TLS");
    refused(&format!("{POOL}[storage]\nledger = \"redis://\"\n"), "storage.ledger", "redis://", "no host");
    refused(
        &format!("{POOL}[storage]\nledger = \"redis://a\"\nledger_env = \"R\"\n"),
        "storage.ledger",
        "redis://a",
        "not both",
    );
    refused(
        &format!("{POOL}[storage]\nledger = \"redis://a\"\ndatabase = \"mysql://b\"\n"),
        "storage.database",
        "mysql",
        "PostgreSQL URL",
    );
    refused(
        &format!("{POOL}[storage]\ndatabase = \"postgres://db/x\"\n"),
        "storage.database",
        "postgres://db",
        "cluster mode only",
    );
    refused(&format!("{POOL}[storage]\ndomain = \"a b\"\n"), "storage.domain", "a b", "1 to 64");
    refused(
        &format!("{POOL}[storage]\nledger_env = \" \"\n"),
        "storage.ledger_env",
        "ledger_env",
        "environment variable",
    );
    refused(
        &format!("{POOL}[storage]\non_redis_unavailable = \"local_fallback\"\n"),
        "storage.on_redis_unavailable",
        "local_fallback",
        "[storage] nodes",
    );
    refused(
        &format!("{POOL}on_redis_unavailable = \"local_fallback\"\n"),
        "pools[0].on_redis_unavailable",
        "local_fallback",
        "[storage] nodes",
    );
    refused(&format!("{POOL}[storage]\nnodes = 0\n"), "storage.nodes", "nodes", "between 1 and 1000");
    refused(
        &format!("{POOL}[storage]\nfallback_max = \"5s\"\n"),
        "storage.fallback_max",
        "fallback_max",
        "10s and 24h",
    );
    refused(&format!("{POOL}[storage]\nfallback_max = \"2d\"\n"), "storage.fallback_max", "fallback_max", "");
    refused(&format!("{POOL}[storage]\nfallback_max = 900\n"), "storage.fallback_max", "fallback_max", "duration");
    let e = load(&format!("{POOL}[storage]\nledger = \"redis://a\"\nmystery = 1\n")).unwrap_err().errors;
    assert_eq!(e[0].line, Some(6), "{}", e[0]);
}

#[test]
fn a_password_in_a_refused_url_is_not_repeated() {
    let e = load(&format!("{POOL}[storage]\nledger = \"redis://a\"\ndatabase = \"mysql://u:secret@b\"\n"))
        .unwrap_err()
        .errors;
    assert!(!e[0].message.contains("secret"), "{}", e[0].message);
}

#[test]
fn local_fallback_with_nodes_is_accepted_and_each_pool_has_its_policy() {
    let text = "[[pools]]\nname = \"vapi\"\nlimit = 10\non_redis_unavailable = \"local_fallback\"\n\
                [[pools]]\nname = \"twilio\"\nlimit = 4\n\
                [storage]\nledger = \"redis://10.0.0.5:6379\"\nnodes = 3\n";
    let c = load(text).unwrap();
    assert_eq!(c.storage.nodes, Some(3));
    assert_eq!(c.storage.fallback_max, std::time::Duration::from_secs(15 * 60), "the default bound");
    assert_eq!(c.redis_unavailable(), vec![RedisUnavailable::LocalFallback, RedisUnavailable::FailClosed]);
    let c = load(&format!("{text}fallback_max = \"2m\"\n")).unwrap();
    assert_eq!(c.storage.fallback_max, std::time::Duration::from_secs(120));
}

#[test]
fn the_example_shows_the_storage_settings() {
    for field in [
        "[storage]",
        "ledger",
        "ledger_env",
        "database",
        "database_env",
        "domain",
        "on_redis_unavailable",
        "nodes",
        "fallback_max",
    ] {
        assert!(EXAMPLE.contains(field), "the example does not mention `{field}`");
    }
}
