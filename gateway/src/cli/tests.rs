use std::time::Duration;

use super::*;

fn parse(args: &[&str]) -> Result<(Config, DevMode), CliError> {
    let mut all = vec!["danmaku-gateway"];
    all.extend_from_slice(args);
    match Args::try_from_args(all) {
        Ok(a) => a.with_file()?.into_config(),
        Err(e) => panic!("flags {args:?} do not parse: {e}"),
    }
}

fn refused(args: &[&str]) -> String {
    match parse(args) {
        Ok(_) => panic!("{args:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// A TOML file in the temp directory, removed on drop.
struct TempToml(std::path::PathBuf);

impl TempToml {
    fn new(name: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("danmaku-cli-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf8")
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_toml_file_fills_what_flags_do_not_set() {
    let file = TempToml::new(
        "fills",
        "listen = \"127.0.0.1:9001\"\nheartbeat_ms = 5000\nhistory_len = 77\napi_keys = [\"file-key\"]\njwt_secret = \"file-secret-0123456789\"\n",
    );
    let (c, dev) = parse(&["--config", file.path(), "--heartbeat-ms", "7000"]).expect("config");
    assert_eq!(c.listen.port(), 9001, "from the file");
    assert_eq!(
        c.ws.heartbeat,
        Duration::from_millis(7000),
        "the flag wins over the file"
    );
    assert_eq!(c.memory.history_len, 77);
    assert_eq!(c.auth.api_keys, vec!["file-key".to_string()]);
    assert!(
        dev.jwt_secret.is_none() && dev.api_key.is_none(),
        "not dev mode"
    );
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    assert!(refused(&["--jwt-secret", "short"]).contains("at least 16"));
    assert!(refused(&["--listen", "nowhere"]).contains("host:port"));
    assert!(refused(&["--gateway-id", "has space"]).contains("[A-Za-z0-9_-]"));
    assert!(refused(&["--comments-per-s=-1"]).contains("--comments-per-s is -1"));
    assert!(
        refused(&["--redis-url", "redis://a", "--redis-cluster", "redis://b"]).contains("not both")
    );
    let file = TempToml::new("unknown", "no_such_setting = 1\n");
    assert!(
        refused(&["--config", file.path()]).contains("no_such_setting"),
        "unknown keys are refused"
    );
}

#[test]
fn without_credentials_it_runs_in_dev_mode() {
    let (c, dev) = parse(&[]).expect("config");
    assert!(dev.jwt_secret.is_some() && dev.api_key.is_some());
    assert!(c.auth.anonymous);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    let (c, _) = parse(&["--redis-url", "redis://a:1,redis://b:2"]).expect("config");
    let redis = c.redis.expect("redis");
    assert_eq!((redis.urls.len(), redis.cluster), (2, false));
}

#[test]
fn settings_a_store_would_ignore_are_refused() {
    let e = refused(&["--redis-url", "redis://a:1", "--max-rooms", "10"]);
    assert!(
        e.starts_with("--max-rooms only applies to the in-memory store"),
        "{e}"
    );
    let e = refused(&["--redis-prefix", "x"]);
    assert!(e.starts_with("--redis-prefix only applies to Redis"), "{e}");
    assert!(parse(&["--max-rooms", "10"]).is_ok());
    let (c, _) = parse(&["--redis-cluster", "redis://a:1", "--redis-prefix", "x"]).expect("config");
    assert_eq!(c.redis.expect("redis").prefix, "x");
}

#[test]
fn store_bounds_reach_redis() {
    let (c, _) = parse(&[
        "--redis-url",
        "redis://a:1",
        "--room-ttl-s",
        "5",
        "--history-age-s",
        "7",
        "--history-len",
        "9",
    ])
    .expect("config");
    let redis = c.redis.expect("redis");
    assert_eq!(redis.room_ttl, Duration::from_secs(5));
    assert_eq!(redis.history_age, Duration::from_secs(7));
    assert_eq!(redis.history_len, 9);
}

#[test]
fn credentials_that_exclude_or_need_each_other() {
    let secret = "0123456789abcdef";
    assert!(refused(&["--jwt-secret", secret, "--jwt-public-key", "/k.pem"]).contains("not both"));
    let e = refused(&["--jwt-secret", secret, "--jwt-algorithm", "ES256"]);
    assert_eq!(e, "--jwt-algorithm only applies with --jwt-public-key");
    assert!(refused(&["--jwt-algorithm", "ES256"]).contains("--jwt-public-key"));
    let e = refused(&["--jwt-public-key", "/nonexistent/k.pem"]);
    assert!(
        e.starts_with("reading --jwt-public-key /nonexistent/k.pem"),
        "{e}"
    );
}

#[test]
fn the_store_check_sees_settings_from_the_file() {
    let file = TempToml::new("store", "max_rooms = 5\n");
    let e = refused(&["--config", file.path(), "--redis-url", "redis://a:1"]);
    assert!(e.starts_with("--max-rooms only applies"), "{e}");
}

#[test]
fn every_setting_follows_the_naming_rule() {
    let cmd = command();
    for s in SETTINGS {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == s.name)
            .unwrap_or_else(|| panic!("{} is not an argument", s.name));
        assert_eq!(arg.get_long(), Some(&*s.name.replace('_', "-")));
        let env = format!("DANMAKU_{}", s.name.to_uppercase());
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(env.as_str()),
            "{}",
            s.name
        );
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let has_default = (s.default)(&Config::default()) != Shown::Text("—");
        assert_eq!(
            help.contains("[default: "),
            has_default,
            "{}: {help}",
            s.name
        );
    }
}
