//! `wss://` through a TLS-terminating proxy in front of a real gateway, with the
//! proxy's self-signed certificate trusted by `--ca-file` (or not).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::tls::{Cert, TlsProxy};
use support::{Gateway, KEY, SECRET, TempDir, gateway};

/// A gateway behind a TLS proxy, and the proxy's certificate in a PEM file.
struct Behind {
    _gw: Gateway,
    proxy: TlsProxy,
    dir: TempDir,
    pem: std::path::PathBuf,
}

impl Behind {
    fn start(cert: &Cert, flags: &[&str]) -> Self {
        let gw = gateway(flags);
        let plain: SocketAddr = gw
            .url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .parse()
            .unwrap();
        let proxy = TlsProxy::start(cert, plain);
        let dir = TempDir::new();
        let pem = cert.write_pem(dir.path());
        Self {
            _gw: gw,
            proxy,
            dir,
            pem,
        }
    }

    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}/ws", self.proxy.addr.port())
    }

    /// A run through the proxy with its certificate trusted by `--ca-file`.
    fn trusted(&self, args: &[&str]) -> Ran {
        let pem = self.pem.to_str().unwrap();
        let args: Vec<&str> = args.iter().copied().chain(["--ca-file", pem]).collect();
        run(&self.url(), self.dir.path(), &args)
    }

    /// A run through the proxy trusting the public roots only.
    fn untrusted(&self, args: &[&str]) -> Ran {
        run(&self.url(), self.dir.path(), args)
    }
}

/// What a run left: exit code, stdout and stderr together, the JSON results if any.
struct Ran {
    code: i32,
    output: String,
    json: Option<Value>,
}

/// Runs the CLI quietly against `url` with the test credentials and `args`.
fn run(url: &str, dir: &Path, args: &[&str]) -> Ran {
    let json = dir.join("out.json");
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_danmaku-loadtest"))
        .env_remove("DANMAKU_API_KEY")
        .env_remove("DANMAKU_JWT_SECRET")
        .args(args)
        .args([
            "--url",
            url,
            "--api-key",
            KEY,
            "--jwt-secret",
            SECRET,
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{output}");
    Ran {
        code: out.status.code().unwrap_or(-1),
        output,
        json: std::fs::read_to_string(&json)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap()),
    }
}

#[test]
fn fanout_over_wss_delivers_everything() {
    let b = Behind::start(&Cert::openssl_like(), &[]);
    let ran = b.trusted(&[
        "fanout",
        "--viewers",
        "60",
        "--rooms",
        "3",
        "--rate",
        "30",
        "--duration-s",
        "2",
    ]);
    let v = ran.json.unwrap();
    assert_eq!(ran.code, 0, "{v}");
    let e = &v["events"];
    assert_eq!(e["published"], 60, "{v}");
    // 20 events per room, each to its 20 viewers.
    assert_eq!(e["expected"], 60 * 20, "{v}");
    assert_eq!(e["delivered"], e["expected"], "{v}");
    assert_eq!(
        (&e["lost"], &e["duplicated"]),
        (&0.into(), &0.into()),
        "{v}"
    );
    assert_eq!(v["connections"]["established"], 60, "{v}");
    assert_eq!(v["connections"]["failed"], 0, "{v}");
}

#[test]
fn resume_over_wss_recovers_every_reconnect() {
    let b = Behind::start(&Cert::leaf(), &[]);
    let ran = b.trusted(&[
        "resume",
        "--viewers",
        "40",
        "--rate",
        "30",
        "--duration-s",
        "2",
        "--drop-fraction",
        "0.3",
        "--drop-every-s",
        "1",
    ]);
    let v = ran.json.unwrap();
    assert_eq!(ran.code, 0, "{v}");
    assert!(v["resume"]["reconnects"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["resume"]["reconnects"], v["resume"]["recovered"], "{v}");
    assert!(v["events"]["delivered"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["events"]["lost"], 0, "{v}");
    assert_eq!(v["events"]["duplicated"], 0, "{v}");
}

#[test]
fn interact_over_wss_checks_likes_and_votes() {
    let b = Behind::start(
        &Cert::openssl_like(),
        &["--likes-per-s", "100", "--likes-burst", "100"],
    );
    let ran = b.trusted(&[
        "interact",
        "--viewers",
        "30",
        "--rooms",
        "2",
        "--rate",
        "10",
        "--duration-s",
        "2",
        "--like-rate",
        "3",
    ]);
    let v = ran.json.unwrap();
    assert_eq!(ran.code, 0, "{v}");
    let i = &v["interact"];
    assert!(i["likes_acked"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(i["likes_total"], i["likes_acked"], "{v}");
    assert_eq!(i["votes_acked"], 30, "{v}");
    assert_eq!(v["events"]["lost"], 0, "{v}");
}

#[test]
fn retention_over_wss_matches_the_analytics() {
    let b = Behind::start(&Cert::leaf(), &["--analytics-time-scale", "60"]);
    let ran = b.trusted(&[
        "retention",
        "--viewers",
        "30",
        "--arrivals-s",
        "60",
        "--max-dwell-s",
        "120",
        "--dwell",
        "A=exp:40,B=exp:50",
        "--return-share",
        "0",
    ]);
    let v = ran.json.unwrap();
    assert_eq!(ran.code, 0, "{:#}", v["failures"]);
    assert_eq!(v["analytics"]["viewers"]["unique"], 30, "{v}");
}

#[test]
fn an_untrusted_certificate_is_refused_and_named() {
    let b = Behind::start(&Cert::leaf(), &[]);
    // The API is checked first: its https:// handshake fails.
    let fanout = b.untrusted(&["fanout", "--viewers", "5"]);
    assert_eq!(fanout.code, 2, "a setup error");
    assert!(
        fanout
            .output
            .contains("invalid peer certificate: UnknownIssuer")
            && fanout.output.contains("--ca-file"),
        "{}",
        fanout.output
    );
    // `connect` uses no API: the viewer's wss:// handshake fails, with its cause.
    let connect = b.untrusted(&["connect", "--connections", "5"]);
    assert_eq!(connect.code, 2, "a setup error");
    let cause = format!("connect_tls_certificate_unknown_issuer@{}", b.proxy.addr);
    assert!(connect.output.contains(&cause), "{}", connect.output);
}

#[test]
fn an_openssl_certificate_needs_its_ca_file() {
    let b = Behind::start(&Cert::openssl_like(), &[]);
    let refused = b.untrusted(&["connect", "--connections", "5"]);
    assert_eq!(refused.code, 2, "a setup error");
    let cause = format!(
        "connect_tls_certificate_ca_used_as_end_entity@{}",
        b.proxy.addr
    );
    assert!(
        refused.output.contains(&cause) && refused.output.contains("--ca-file"),
        "{}",
        refused.output
    );
    let trusted = b.trusted(&["connect", "--connections", "5"]);
    let v = trusted.json.unwrap();
    assert_eq!(trusted.code, 0, "{v}");
    assert_eq!(v["connections"]["established"], 5, "{v}");
}

#[test]
fn a_missing_ca_file_is_a_setup_error_naming_it() {
    let dir = TempDir::new();
    let missing = dir.path().join("no-such.pem");
    let ran = run(
        "wss://127.0.0.1:1/ws",
        dir.path(),
        &["connect", "--ca-file", missing.to_str().unwrap()],
    );
    assert_eq!(ran.code, 2);
    assert!(
        ran.output.contains(&missing.display().to_string()),
        "{}",
        ran.output
    );
    assert!(ran.json.is_none());
}
