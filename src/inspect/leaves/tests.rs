use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, RootCertStore};
use x509_parser::extensions::GeneralName;

use super::*;
use crate::inspect::{Authority, Inspection};
use crate::stats::Stats;

/// A CA made in memory, valid for `days` from an hour ago.
fn authority(days: i64) -> Authority {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "leaves test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    let cert = params.self_signed(&key).unwrap();
    Authority::from_parts(cert.der().clone(), key, now).unwrap()
}

fn leaves(capacity: usize) -> Leaves {
    Leaves::new(Arc::new(authority(365)), capacity)
}

/// The leaf's DER, parsed.
fn parsed(leaf: &CertifiedKey) -> x509_parser::certificate::X509Certificate<'_> {
    x509_parser::parse_x509_certificate(&leaf.cert[0])
        .unwrap()
        .1
}

#[test]
fn a_name_gets_a_dns_san_and_an_end_entity_certificate() {
    let stats = Stats::default();
    let leaf = leaves(4).certified_key("Example.COM.", &stats).unwrap();
    let cert = parsed(&leaf);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName("example.com")]
    );
    let constraints = cert.basic_constraints().unwrap().unwrap();
    assert!(!constraints.value.ca, "a leaf is not a CA");
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth);
    assert!(!cert.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert_eq!(leaf.cert.len(), 2, "the leaf, then the CA");
    let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!(lifetime <= LEAF_LIFETIME && lifetime > LEAF_LIFETIME - Duration::hours(1));
}

#[test]
fn an_address_gets_an_ip_san() {
    let stats = Stats::default();
    let leaves = leaves(4);
    for (asked, bytes) in [
        ("192.0.2.7", vec![192, 0, 2, 7]),
        (
            "[2001:db8::1]",
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec(),
        ),
    ] {
        let leaf = leaves.certified_key(asked, &stats).unwrap();
        let cert = parsed(&leaf);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::IPAddress(&bytes)]
        );
    }
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let stats = Stats::default();
    let leaves = Leaves::new(Arc::new(authority(3)), 4);
    let leaf = leaves.certified_key("short.test", &stats).unwrap();
    let cert = parsed(&leaf);
    let ca_end = leaves.authority().not_after();
    assert_eq!(cert.validity().not_after.to_datetime(), ca_end);
}

#[test]
fn names_that_are_not_hosts_are_refused() {
    let stats = Stats::default();
    let leaves = leaves(4);
    for bad in [
        "",
        "a..b",
        "exa mple.com",
        "bad/name",
        "é.example",
        &"a".repeat(64),
    ] {
        assert!(
            matches!(
                leaves.certified_key(bad, &stats),
                Err(LeafError::BadName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(stats.inspection().snapshot().leaves_generated, 0);
}

#[test]
fn a_repeat_visit_is_served_from_the_cache_and_the_cache_is_bounded() {
    let stats = Stats::default();
    let leaves = leaves(2);
    let first = leaves.certified_key("a.test", &stats).unwrap();
    let again = leaves.certified_key("A.test.", &stats).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "one leaf for one name");
    let counts = stats.inspection().snapshot();
    assert_eq!((counts.leaves_generated, counts.leaves_cached), (1, 1));
    assert_eq!(counts.leaf_durations.count, 1);
    leaves.certified_key("b.test", &stats).unwrap();
    leaves.certified_key("c.test", &stats).unwrap();
    assert_eq!(leaves.len(), 2, "bounded");
    let evicted = leaves.certified_key("a.test", &stats).unwrap();
    assert!(
        !Arc::ptr_eq(&first, &evicted),
        "the least recent was evicted"
    );
    assert_eq!(stats.inspection().snapshot().leaves_generated, 4);
}

#[test]
fn a_cached_leaf_is_replaced_before_it_expires() {
    let stats = Stats::default();
    let leaves = leaves(4);
    let now = OffsetDateTime::now_utc();
    let first = leaves.certified_key_at("a.test", now, &stats).unwrap();
    let later = now + LEAF_LIFETIME - Duration::hours(25);
    let still = leaves.certified_key_at("a.test", later, &stats).unwrap();
    assert!(Arc::ptr_eq(&first, &still), "fresh a day before the end");
    let late = now + LEAF_LIFETIME - Duration::hours(23);
    let renewed = leaves.certified_key_at("a.test", late, &stats).unwrap();
    assert!(
        !Arc::ptr_eq(&first, &renewed),
        "renewed within a day of the end"
    );
}

/// A real handshake: a rustls client that trusts only the CA accepts the leaf for the
/// name it asked (chain, name, serverAuth), and learns `http/1.1`. An address gets no
/// SNI from rustls: the CONNECT host (here the same address) stands in.
#[tokio::test]
async fn a_client_that_trusts_the_ca_accepts_the_leaf() {
    let stats = Arc::new(Stats::default());
    let ca = authority(365);
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert().clone()).unwrap();
    let inspection = Inspection::new(ca, Arc::new(client_config(RootCertStore::empty()))).unwrap();
    let client = Arc::new(client_config(roots));
    for (asked, connect_host) in [
        ("www.example.test", "fallback.test"),
        ("192.0.2.9", "192.0.2.9"),
    ] {
        let server = inspection.server_config(connect_host, Arc::clone(&stats));
        let (near, far) = tokio::io::duplex(16 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client));
        let name = ServerName::try_from(asked.to_string()).unwrap();
        let serving = tokio::spawn(async move {
            let mut tls = acceptor.accept(far).await?;
            tls.write_all(b"hello").await?;
            tls.shutdown().await
        });
        let handshake = connector.connect(name, near);
        let mut tls = tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
            .await
            .expect("handshake in time")
            .unwrap_or_else(|e| panic!("{asked}: {e}"));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut text = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tls.read_to_string(&mut text),
        )
        .await
        .expect("read in time")
        .unwrap();
        assert_eq!(text, "hello");
        serving.await.unwrap().unwrap();
        let leaf = inspection.leaves().certified_key(asked, &stats).unwrap();
        let presented = &tls.get_ref().1.peer_certificates().unwrap()[0];
        assert_eq!(
            *presented, leaf.cert[0],
            "{asked}: the cached leaf was presented"
        );
    }
    assert!(
        inspection
            .leaves()
            .certified_key("fallback.test", &stats)
            .is_ok()
    );
    let counts = stats.inspection().snapshot();
    assert_eq!(counts.leaves_generated, 3, "{counts:?}");
}

/// A client that trusts another CA refuses the leaf.
#[tokio::test]
async fn a_client_that_trusts_another_ca_refuses_the_leaf() {
    let stats = Arc::new(Stats::default());
    let inspection = Inspection::new(
        authority(365),
        Arc::new(client_config(RootCertStore::empty())),
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(authority(365).cert().clone()).unwrap();
    let (near, far) = tokio::io::duplex(16 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(inspection.server_config("x.test", stats));
    tokio::spawn(async move { acceptor.accept(far).await.map(|_| ()) });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(roots)));
    let handshake = connector.connect(ServerName::try_from("x.test").unwrap(), near);
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .expect("handshake in time");
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
}

fn client_config(roots: RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}
