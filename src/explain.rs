//! `proxy-server explain`: what the policy decides for one request, and why — the
//! decision, the rule that made it (`file:line` and name), the addresses the host
//! resolves to, and, for each earlier rule, the condition that did not hold. It asks the
//! same checks the proxy runs, in the same order (client, blacklist and local targets,
//! CONNECT ports, the resolved addresses, then the rules), with the same settings the
//! proxy would load from `--config`; the one difference is that `--user` needs no
//! password. Exit codes: 0 allow, 1 deny or authentication required, 2 bad input.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use crate::access::{AccessControl, Snapshot};
use crate::acl::{Facts, Verdict, canonical_ip, normalise};
use crate::config::{ExplainArgs, Invocation, LoadError, invocation};
use crate::http::target::parse_target;
use crate::upstream::{Resolver, ResolverSettings};

const EXIT_ALLOW: u8 = 0;
const EXIT_DENY: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

/// Runs `explain` and prints its answer; the exit code says allow, deny or bad input.
pub fn run(args: &ExplainArgs) -> ExitCode {
    match explain(args) {
        Ok((text, allowed)) => {
            print!("{text}");
            ExitCode::from(if allowed { EXIT_ALLOW } else { EXIT_DENY })
        }
        Err(problem) => {
            eprintln!("proxy-server explain: {problem}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// The report and whether the request is allowed; `Err` for bad input.
pub fn explain(args: &ExplainArgs) -> Result<(String, bool), String> {
    let target = parse_target(&args.method, &bytes::Bytes::from(args.url.clone()))
        .map_err(|error| format!("{} {}: {}", args.method, args.url, error.body().trim_end()))?;
    let (access, resolver) = load(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    let resolver = Resolver::new(&resolver, Default::default())
        .map_err(|error| format!("cannot read the hosts file: {error}"))?;
    let addrs = runtime.block_on(resolver.resolve(target.host(), target.port()));
    let snapshot = access.snapshot();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "request: {} {} from {}",
        args.method, args.url, args.client
    );
    let ips: Vec<IpAddr> = match &addrs {
        Ok(addrs) => addrs.iter().map(|a| canonical_ip(a.ip())).collect(),
        Err(error) => {
            let _ = writeln!(out, "addresses: none ({})", error.body().trim_end());
            Vec::new()
        }
    };
    if !ips.is_empty() {
        let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "addresses: {}", list.join(", "));
    }
    let is_tunnel = args.method == "CONNECT";
    if let Some(reason) = safe_defaults(&snapshot, args, &target, is_tunnel, &addrs) {
        let _ = writeln!(out, "decision: deny\nrule: {reason}");
        return Ok((out, false));
    }
    if snapshot.authenticator.is_some() && args.user.is_none() && !snapshot.rules.names_users() {
        let _ = writeln!(
            out,
            "decision: authentication required (407)\nrule: every request must log in \
             (auth_file is set and no rule names users)"
        );
        return Ok((out, false));
    }
    Ok(trace(
        &snapshot,
        args,
        target.host(),
        target.port(),
        &ips,
        out,
    ))
}

/// The settings `--config` gives (or the defaults) and the files they name.
fn load(args: &ExplainArgs) -> Result<(AccessControl, ResolverSettings), String> {
    let mut argv: Vec<OsString> = vec!["proxy-server".into()];
    if let Some(config) = &args.config {
        argv.push("--config".into());
        argv.push(config.clone().into_os_string());
    }
    let settings = match invocation(argv) {
        Ok(Invocation::Serve { settings, .. }) => settings,
        Ok(Invocation::Explain(_)) => return Err("unexpected command line".into()),
        Err(LoadError::File(errors)) => return Err(errors.to_string()),
        Err(LoadError::Flags(error)) => return Err(error.to_string()),
    };
    let access =
        AccessControl::load(&settings.config.access).map_err(|errors| errors.to_string())?;
    Ok((access, settings.config.resolver))
}

/// The safe defaults and the blacklist, in the order the proxy checks them; the
/// refusal's reason if one refuses.
fn safe_defaults(
    snapshot: &Snapshot,
    args: &ExplainArgs,
    target: &crate::http::RequestTarget,
    is_tunnel: bool,
    addrs: &Result<Vec<std::net::SocketAddr>, crate::error::ProxyError>,
) -> Option<String> {
    let policy = &snapshot.baseline;
    let refused = policy
        .check_client(args.client)
        .and_then(|()| policy.check_host(target.host()))
        .and_then(|()| match is_tunnel {
            true => policy.check_connect_port(target.port()),
            false => Ok(()),
        })
        .and_then(|()| match addrs {
            Ok(addrs) => policy.check_addrs(addrs),
            Err(_) => Ok(()),
        });
    refused.err().map(|denial| {
        let source = match denial.brief() {
            "blocked-host" | "blocked-address" => "the blacklist (--blacklist, checked first)",
            _ => "the safe defaults",
        };
        format!("{source}: {denial}")
    })
}

/// The rules' decision with every earlier rule's failing condition.
fn trace(
    snapshot: &Snapshot,
    args: &ExplainArgs,
    host: &str,
    port: u16,
    ips: &[IpAddr],
    mut out: String,
) -> (String, bool) {
    let host = normalise(host);
    let book = &snapshot.rules;
    let facts = Facts {
        user: args.user.as_deref(),
        client: canonical_ip(args.client),
        host: &host,
        port,
        method: &args.method,
        now: book.uses_hours().then(|| snapshot.clock.now()),
    };
    let (verdict, steps) = book.trace(&facts, ips);
    let (decision, rule, allowed) = match &verdict {
        Verdict::Allow { rule, .. } => ("allow", rule, true),
        Verdict::Deny { rule } => ("deny", rule, false),
        Verdict::AuthRequired { rule } => ("authentication required (407)", rule, false),
    };
    let rule = rule.as_deref().unwrap_or("none (no policy rules)");
    let _ = writeln!(out, "decision: {decision}\nrule: {rule}");
    if let Some(now) = facts.now {
        let _ = writeln!(out, "local time: {now}");
    }
    if !steps.is_empty() {
        let _ = writeln!(out, "earlier rules:");
    }
    for step in steps {
        let _ = writeln!(
            out,
            "  {}: {} did not match",
            step.rule.label, step.condition
        );
    }
    (out, allowed)
}
