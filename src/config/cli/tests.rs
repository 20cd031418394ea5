//! The command line: defaults, each flag group, and the limits clap enforces.

use super::*;
use crate::config::Protocol;

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("proxy-server").chain(argv.iter().copied()))
}

fn settings(argv: &[&str]) -> Settings {
    parse(argv).unwrap_or_else(|e| panic!("{e}")).settings()
}

#[test]
fn defaults() {
    let settings = settings(&[]);
    let config = &settings.config;
    assert_eq!(
        config.listeners,
        vec![Listener::http("127.0.0.1:8888".parse().unwrap())]
    );
    assert_eq!(config.pac_file, None);
    assert_eq!(config.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(config.via_name, "proxy-server");
    let access = &config.access;
    assert_eq!((&access.auth_file, &access.blacklist), (&None, &None));
    assert!(!access.allow_local_targets);
    assert_eq!(access.connect_ports.to_string(), "443");
    assert_eq!(access.allow_clients, None);
    assert!(config.cache.is_none());
    assert_eq!(settings.log.dir, PathBuf::from("logs"));
    assert_eq!(settings.log.format, LogFormat::Squid);
    assert_eq!(
        settings.log.rotation,
        RotationPolicy {
            max_bytes: 10 * BYTES_PER_MIB,
            keep: 5
        }
    );
    assert_eq!(settings.log.level, "info");
    assert_eq!(settings.metrics.addr, None);
    assert_eq!(settings.metrics.stats_interval, None);
    assert_eq!(settings.workers, None);
}

#[test]
fn access_flags_and_their_errors() {
    let access = settings(&[
        "--allow-local-targets",
        "--connect-ports",
        "443,8443,1024-65535",
        "--allow-clients",
        "10.0.0.0/8,192.0.2.7,fd00::/8",
    ])
    .config
    .access;
    assert!(access.allow_local_targets);
    assert!(access.connect_ports.contains(5000) && !access.connect_ports.contains(25));
    assert_eq!(access.allow_clients.as_ref().map(Vec::len), Some(3));
    let bad_ports = parse(&["--connect-ports", "443,smtp"])
        .unwrap_err()
        .to_string();
    assert!(bad_ports.contains("not a port number"), "{bad_ports}");
    let bad_clients = parse(&["--allow-clients", "10.0.0.0/8,nope"])
        .unwrap_err()
        .to_string();
    assert!(
        bad_clients.contains("neither an address nor a CIDR"),
        "{bad_clients}"
    );
}

#[test]
fn cache_flags_become_byte_sizes() {
    let cache = settings(&["--cache", "--cache-size", "1", "--cache-max-object", "16"])
        .config
        .cache;
    assert_eq!(
        cache,
        Some(CacheSettings {
            capacity: 1 << 20,
            max_object: 16 << 10
        })
    );
    let sizes_alone = settings(&["--cache-size", "1"]).config.cache;
    assert!(sizes_alone.is_none(), "the cache is on only with --cache");
    assert!(parse(&["--cache-size", "0"]).is_err());
}

#[test]
fn log_flags() {
    let log = settings(&[
        "--log-dir",
        "/var/log/p",
        "--log-format",
        "json",
        "--log-max-size",
        "1",
        "--log-keep",
        "0",
        "--log-level",
        "debug",
    ])
    .log;
    assert_eq!(log.dir, PathBuf::from("/var/log/p"));
    assert_eq!(log.format, LogFormat::Json);
    assert_eq!(
        log.rotation,
        RotationPolicy {
            max_bytes: BYTES_PER_MIB,
            keep: 0
        }
    );
    assert_eq!(log.level, "debug");
    assert!(parse(&["--log-max-size", "0"]).is_err());
    assert!(parse(&["--log-format", "xml"]).is_err());
}

#[test]
fn metrics_flags_are_off_unless_given() {
    let metrics = settings(&["--metrics-addr", "127.0.0.1:9898", "--stats-interval", "30"]).metrics;
    assert_eq!(metrics.addr, Some("127.0.0.1:9898".parse().unwrap()));
    assert_eq!(metrics.stats_interval, Some(Duration::from_secs(30)));
    assert!(parse(&["--stats-interval", "0"]).is_err());
    assert!(parse(&["--metrics-addr", "localhost"]).is_err());
}

#[test]
fn core_flags_and_their_limits() {
    let settings = settings(&[
        "--host",
        "::1",
        "--port",
        "3128",
        "--max-connections",
        "10",
        "--connect-timeout",
        "2",
        "--workers",
        "3",
    ]);
    assert_eq!(settings.config.main_addr(), "[::1]:3128".parse().unwrap());
    assert_eq!(settings.config.max_connections, 10);
    assert_eq!(settings.config.timeouts.connect, Duration::from_secs(2));
    assert_eq!(settings.workers, Some(3));
    for bad in [
        &["--max-connections", "0"][..],
        &["--idle-timeout", "0"],
        &["--header-timeout", "86401"],
        &["--via-name", "two words"],
        &["--workers", "0"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

fn load(args: &[&str]) -> Result<Invocation, LoadError> {
    invocation(
        std::iter::once("proxy-server")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from)
            .collect(),
    )
}

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxy-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_command_line_overrides_the_file() {
    let path = scratch_file(
        "override",
        "port = 3128\ncache = true\nlog_dir = \"logs\"\nlog_format = \"json\"\n\
         connect_ports = [\"443\", \"8443\"]\n[limits]\nconnections = 7\n",
    );
    let config = path.to_str().unwrap();
    let Ok(Invocation::Serve {
        settings,
        check_config,
        ..
    }) = load(&[
        "--config",
        config,
        "--port",
        "9000",
        "--log-format",
        "squid",
    ])
    else {
        panic!("the file loads");
    };
    assert!(!check_config);
    assert_eq!(settings.config.main_addr().port(), 9000, "the flag wins");
    assert_eq!(settings.log.format, LogFormat::Squid, "the flag wins");
    assert!(settings.config.cache.is_some(), "the file's switch counts");
    assert!(settings.config.access.connect_ports.contains(8443));
    assert_eq!(
        settings.log.dir,
        path.parent().unwrap().join("logs"),
        "relative to the file"
    );
    assert_eq!(settings.config.access.limits.connections, Some(7));
    assert!(settings.config.access.rules.is_some());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn bad_flag_values_in_the_file_are_reported_at_their_line() {
    let path = scratch_file(
        "bad",
        "# ports\nport = 70000\nmax_connections = 0\nworkers = 2\n",
    );
    let config = path.to_str().unwrap();
    let Err(LoadError::File(errors)) = load(&["--config", config]) else {
        panic!("bad values must fail");
    };
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with(&format!("{config}:2: `port`: ")),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with(&format!("{config}:3: `max_connections`: ")),
        "{shown:?}"
    );
    // The same value on the command line replaces the file's: no error then.
    assert!(load(&["--config", config, "--port", "1", "--max-connections", "5"]).is_ok());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn without_a_file_the_flags_alone_decide_and_explain_is_a_subcommand() {
    let Ok(Invocation::Serve { settings, .. }) = load(&["--port", "3129"]) else {
        panic!("flags alone");
    };
    assert_eq!(settings.config.main_addr().port(), 3129);
    assert!(settings.config.access.rules.is_none());
    let Ok(Invocation::Explain(args)) =
        load(&["explain", "--user", "alice", "GET", "http://example.com/"])
    else {
        panic!("explain");
    };
    assert_eq!(
        (args.user.as_deref(), args.method.as_str()),
        (Some("alice"), "GET")
    );
    assert!(matches!(
        load(&["--config", "/nonexistent/p.toml"]),
        Err(LoadError::File(_))
    ));
}

#[test]
fn settings_a_reload_cannot_change_are_named() {
    let running = settings(&["--port", "3128", "--cache"]);
    let same = settings(&["--port", "3128", "--cache", "--blacklist", "rules.txt"]);
    assert_eq!(
        crate::config::needs_restart(&running, &same),
        Vec::<&str>::new(),
        "access settings reload"
    );
    let moved = settings(&["--port", "3129", "--idle-timeout", "5"]);
    assert_eq!(
        crate::config::needs_restart(&running, &moved),
        [
            "listen addresses (host, port, TLS, SOCKS, PROXY protocol, PAC)",
            "timeouts",
            "cache"
        ]
    );
    let pac = settings(&["--port", "3128", "--cache", "--pac-file", "other.pac"]);
    assert_eq!(
        crate::config::needs_restart(&running, &pac),
        ["listen addresses (host, port, TLS, SOCKS, PROXY protocol, PAC)"],
        "a new PAC path needs a restart (its contents reload)"
    );
}

#[test]
fn listener_flags_build_the_list() {
    let config = settings(&[
        "--tls-cert",
        "proxy.pem",
        "--tls-key",
        "proxy.key",
        "--proxy-protocol-from",
        "10.0.0.0/8,192.0.2.7",
        "--socks",
        "127.0.0.1:1080",
        "--pac-file",
        "proxy.pac",
    ])
    .config;
    let [main, socks] = &config.listeners[..] else {
        panic!("{:?}", config.listeners);
    };
    assert_eq!(main.protocol, Protocol::Http);
    assert_eq!(
        main.tls,
        Some(TlsFiles {
            cert: "proxy.pem".into(),
            key: "proxy.key".into()
        })
    );
    assert_eq!(main.proxy_protocol_from.len(), 2);
    assert_eq!(socks.protocol, Protocol::Socks5);
    assert_eq!(socks.addr, "127.0.0.1:1080".parse().unwrap());
    assert!(socks.tls.is_none() && socks.proxy_protocol_from.is_empty());
    assert_eq!(config.pac_file, Some(PathBuf::from("proxy.pac")));
    assert!(
        parse(&["--tls-cert", "proxy.pem"]).is_err(),
        "a certificate needs its key"
    );
    assert!(
        parse(&["--tls-key", "proxy.key"]).is_err(),
        "a key needs its certificate"
    );
    assert!(parse(&["--socks", "localhost:1080"]).is_err());
}
