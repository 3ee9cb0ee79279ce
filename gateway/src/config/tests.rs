use std::time::Duration;

use danmaku_fanout::redis::RedisConfig;

use super::*;

fn refused(change: impl FnOnce(&mut Config)) -> String {
    let mut c = Config::default();
    change(&mut c);
    match c.validate() {
        Ok(()) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_defaults_are_valid() {
    assert_eq!(Config::default().validate(), Ok(()));
    let with_redis = Config {
        redis: Some(RedisConfig::default()),
        ..Config::default()
    };
    assert_eq!(with_redis.validate(), Ok(()));
}

#[test]
fn numbers_out_of_range_name_the_setting_and_the_range() {
    assert_eq!(
        refused(|c| c.ws.heartbeat = Duration::from_millis(99)),
        "--heartbeat-ms is 99; it must be between 100 and 86400000"
    );
    assert_eq!(
        refused(|c| c.ws.outbound_queue = 0),
        "--outbound-queue is 0; it must be at least 1"
    );
    assert_eq!(
        refused(|c| c.ws.outbound_queue_bytes = 64 * 1024),
        "--outbound-queue-bytes is 65536; it must be at least 131072"
    );
    assert_eq!(
        refused(|c| c.ws.send_buffer_bytes = 1000),
        "--send-buffer-bytes is 1000; it must be between 4096 and 67108864"
    );
    assert_eq!(
        refused(|c| c.rates.likes.burst = 0.5),
        "--likes-burst is 0.5; it must be between 1 and 1000000"
    );
    assert!(refused(|c| c.rates.votes.per_s = f64::NAN).starts_with("--votes-per-s is NaN"));
    assert!(refused(|c| c.limits.max_frame_bytes = 100).starts_with("--max-frame-bytes"));
    assert!(refused(|c| c.memory.room_ttl = Duration::ZERO).starts_with("--room-ttl-s is 0"));
    assert!(refused(|c| c.max_body_bytes = 1 << 30).starts_with("--max-body-bytes"));
    // Zero is a meaningful value where the doc says so.
    let mut c = Config::default();
    c.ws.write_linger = Duration::ZERO;
    c.ws.drain_after = Duration::ZERO;
    c.rates.comments.per_s = 0.0;
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn contradictions_name_both_settings() {
    assert_eq!(
        refused(|c| {
            c.limits.max_frame_bytes = 256;
            c.limits.comment_max_chars = 300;
        }),
        "--comment-max-chars 300 is more than --max-frame-bytes 256: a longer comment could \
         never arrive in one client frame"
    );
}

#[test]
fn malformed_ids_urls_and_origins() {
    assert!(refused(|c| c.gateway_id = "g 1".into()).starts_with("--gateway-id \"g 1\""));
    assert!(refused(|c| c.gateway_id = "g".repeat(33)).contains("1 to 32"));
    let redis = |change: fn(&mut RedisConfig)| {
        move |c: &mut Config| {
            let mut r = RedisConfig::default();
            change(&mut r);
            c.redis = Some(r);
        }
    };
    assert!(refused(redis(|r| r.prefix = "a:b".into())).starts_with("--redis-prefix"));
    assert!(refused(redis(|r| r.urls.clear())).starts_with("--redis-url"));
    let e = refused(redis(|r| {
        r.cluster = true;
        r.urls = vec!["rediss://a:1".into()];
    }));
    assert!(
        e.starts_with("--redis-cluster \"rediss://a:1\"") && e.contains("TLS"),
        "{e}"
    );
    for bad in [
        "https://a.example/",
        "a.example",
        "https://a.example/path",
        "*",
    ] {
        let e = refused(|c| c.auth.allowed_origins = vec![bad.into()]);
        assert!(e.starts_with("--allowed-origins"), "{bad}: {e}");
        let e = refused(|c| c.auth.cors_origins = vec!["https://ok.example".into(), bad.into()]);
        assert!(e.starts_with("--cors-origins"), "{bad}: {e}");
    }
    let mut c = Config::default();
    c.auth.allowed_origins = vec!["https://a.example".into(), "http://127.0.0.1:3000".into()];
    c.auth.cors_origins = vec!["https://shop.example".into()];
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn credentials_that_cannot_work() {
    assert_eq!(
        refused(|c| c.auth.jwt = JwtKey::Hs256(b"short".to_vec())),
        "--jwt-secret has 5 bytes; it must have at least 16"
    );
    let e = refused(|c| c.auth.api_keys = vec!["ok".into(), "has space".into()]);
    assert!(e.starts_with("--api-keys: key 2 "), "{e}");
    assert!(!e.contains("has space"), "a key is never echoed: {e}");
}
