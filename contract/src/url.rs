//! The URL rules for the runner's services, checked by the runner at start and by the operator
//! (and, as patterns, the CRD) before it creates runner pods, so both always agree.
//!
//! - `OLLAMA_BASE_URL` ([`check_ollama_base_url`]): http or https, and a local or in-cluster
//!   host only — `localhost`, a loopback address, a dot-less service name starting with a
//!   letter (this namespace, or a Compose service), or a Kubernetes service's cluster DNS name
//!   in another namespace: `service.namespace.svc` or `service.namespace.svc.cluster.local`
//!   ([`InClusterHost`]). No public hosts (no cloud egress for student work), no userinfo, no
//!   odd characters, no query or fragment. A path is allowed (a proxy prefix).
//! - An external Ollama in a LearningWorker ([`check_external_ollama_url`]): the same, minus
//!   `localhost` and loopback addresses, which in a runner pod would be the pod itself.
//! - `SUPABASE_URL` ([`check_supabase_url`]): `http(s)://host[:port]` with nothing after it —
//!   the runner appends `/storage/v1/object/...` to it, so a path would be silently dropped by
//!   some proxies and doubled by others.

use std::fmt;
use std::net::IpAddr;

/// Why an Ollama base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OllamaUrlError {
    /// Not `http://` or `https://`.
    Scheme,
    /// Contains `user:pass@`.
    Userinfo,
    /// Characters outside the URL-safe set, a query or fragment, or an empty host.
    Malformed,
    /// A port that is not a number in 1..=65535.
    Port,
    /// A host that is neither loopback nor an in-cluster service name.
    NotLocal(String),
    /// `localhost` or a loopback address where the URL must name another pod's service.
    PodItself(String),
}

impl fmt::Display for OllamaUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OllamaUrlError::Scheme => write!(f, "must start with http:// or https://"),
            OllamaUrlError::Userinfo => write!(f, "must not contain credentials (user@host)"),
            OllamaUrlError::Malformed => write!(
                f,
                "has a malformed host, a query or fragment, or characters that are not allowed"
            ),
            OllamaUrlError::Port => write!(f, "has an invalid port"),
            OllamaUrlError::NotLocal(host) => write!(
                f,
                "host '{host}' is not local: use localhost, a loopback address, an in-cluster service name without dots, or a service's cluster DNS name (service.namespace.svc or service.namespace.svc.cluster.local)"
            ),
            OllamaUrlError::PodItself(host) => write!(
                f,
                "host '{host}' would be the runner pod itself (no Ollama runs there): use the in-cluster service name of the external Ollama, e.g. http://ollama:11434"
            ),
        }
    }
}

impl std::error::Error for OllamaUrlError {}

/// Why a Supabase URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupabaseUrlError {
    /// Not `http://` or `https://`.
    Scheme,
    /// Empty host, or a path, credentials, query, fragment or space after it.
    NotABaseUrl,
}

impl fmt::Display for SupabaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupabaseUrlError::Scheme => write!(f, "must start with http:// or https://"),
            SupabaseUrlError::NotABaseUrl => write!(
                f,
                "must be http(s)://host[:port] without path, credentials or query"
            ),
        }
    }
}

impl std::error::Error for SupabaseUrlError {}

/// The schema pattern of an external Ollama URL in the CRD: http(s), a dot-less service name
/// starting with a letter, or a service's cluster DNS name in another namespace
/// (`service.namespace.svc`, `….svc.cluster.local`), an optional port and path. Together with
/// a CEL rule refusing `localhost` it accepts what [`check_external_ollama_url`] accepts (a test
/// checks a table of URLs against both).
pub const EXTERNAL_OLLAMA_URL_PATTERN: &str = concat!(
    r"^https?://[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?",
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.svc(\.cluster\.local)?)?",
    // A port in 1..=65535 (leading zeros allowed, as the runner's number parsing allows them).
    r"(:0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(/[-A-Za-z0-9._~/]*)?$"
);

/// The schema pattern of `SUPABASE_URL` in the CRD: what [`check_supabase_url`] accepts — a
/// host of URL-safe ASCII characters (or a bracketed IPv6 address), an optional port in
/// 1..=65535, at most one trailing slash. Written with explicit ASCII classes: the API server's
/// regular expressions (Go) and Rust's disagree on what `\s` covers.
pub const SUPABASE_URL_PATTERN: &str = concat!(
    r"^https?://([A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])",
    r"(:0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"/?$"
);

/// A DNS-1035 label (a Kubernetes service name): a letter first, then letters, digits or `-`,
/// not ending in `-`. Digit-only or `0x…` names are refused: URL parsers read them as IPv4
/// addresses (`http://134744072` is 8.8.8.8).
fn is_service_name(host: &str) -> bool {
    host.len() <= 63
        && host.starts_with(|c: char| c.is_ascii_alphabetic())
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !host.ends_with('-')
}

/// A namespace name (a DNS-1123 label): letters, digits or `-`, at most 63, neither starting
/// nor ending with `-`.
fn is_namespace_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An in-cluster host: a Kubernetes service, in the runner's own namespace (a dot-less name)
/// or, by its cluster DNS name, in another one. Only `.svc` and `.svc.cluster.local` names
/// count: a two-label name such as `ollama.ai` is a public domain, and names under another
/// cluster domain can use the `.svc` form, which the pods' DNS search path completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InClusterHost<'a> {
    /// The service's name.
    pub service: &'a str,
    /// Its namespace; `None`: the runner's own.
    pub namespace: Option<&'a str>,
}

impl<'a> InClusterHost<'a> {
    /// Reads `host` (without port) as an in-cluster service, if it is one.
    pub fn parse(host: &'a str) -> Option<Self> {
        if host.parse::<IpAddr>().is_ok() {
            return None;
        }
        let short = host
            .strip_suffix(".svc.cluster.local")
            .or_else(|| host.strip_suffix(".svc"));
        let (service, namespace) = match short {
            None => (host, None),
            Some(short) => {
                let (service, namespace) = short.split_once('.')?;
                (service, Some(namespace))
            }
        };
        let valid = is_service_name(service) && namespace.is_none_or(is_namespace_name);
        valid.then_some(InClusterHost { service, namespace })
    }
}

/// The host and port of an Ollama URL that passed [`check_ollama_base_url`] (the scheme's
/// default port when none is written); `None` for anything else.
pub fn ollama_host_and_port(url: &str) -> Option<(&str, u16)> {
    let Authority { host } = split_ollama_url(url).ok()?;
    let default = if url.starts_with("https://") { 443 } else { 80 };
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.rsplit_once("]:").map(|(_, p)| p),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    };
    let port = match port {
        Some(p) => p.trim_start_matches('0').parse().ok()?,
        None => default,
    };
    Some((host, port))
}

/// A port as the schema patterns allow it: ASCII digits only (leading zeros allowed), 1..=65535.
fn is_port(port: &str) -> bool {
    let significant = port.trim_start_matches('0');
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && significant.len() <= 5
        && significant
            .parse::<u32>()
            .is_ok_and(|p| (1..=65535).contains(&p))
}

/// A URL's host (IPv6 without brackets) and port, after its scheme was checked.
struct Authority<'a> {
    host: &'a str,
}

fn split_ollama_url(url: &str) -> Result<Authority<'_>, OllamaUrlError> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\\\"'<>^`{|}".contains(c))
    {
        return Err(OllamaUrlError::Malformed);
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(OllamaUrlError::Scheme)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(OllamaUrlError::Userinfo);
    }
    if path.contains(['?', '#']) {
        return Err(OllamaUrlError::Malformed);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or(OllamaUrlError::Malformed)?;
        let port = match &v6[close + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(OllamaUrlError::Malformed)?),
        };
        (&v6[..close], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !is_port(p)) {
        return Err(OllamaUrlError::Port);
    }
    if host.is_empty() {
        return Err(OllamaUrlError::Malformed);
    }
    Ok(Authority { host })
}

fn is_loopback_or_localhost(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks an `OLLAMA_BASE_URL` and returns it trimmed, without a trailing slash.
pub fn check_ollama_base_url(url: &str) -> Result<String, OllamaUrlError> {
    let url = url.trim();
    let Authority { host } = split_ollama_url(url)?;
    let local = is_loopback_or_localhost(host) || InClusterHost::parse(host).is_some();
    if !local {
        return Err(OllamaUrlError::NotLocal(host.to_owned()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Checks the URL of an Ollama the operator does not manage: [`check_ollama_base_url`], and
/// not `localhost` or a loopback address (the runner pod itself, which runs no Ollama and
/// which the operator could never probe).
pub fn check_external_ollama_url(url: &str) -> Result<String, OllamaUrlError> {
    let checked = check_ollama_base_url(url)?;
    let Authority { host } = split_ollama_url(&checked)?;
    if is_loopback_or_localhost(host) {
        return Err(OllamaUrlError::PodItself(host.to_owned()));
    }
    Ok(checked)
}

/// Checks a `SUPABASE_URL` and returns it trimmed, without its trailing slash.
pub fn check_supabase_url(url: &str) -> Result<String, SupabaseUrlError> {
    let url = url.trim();
    let url = url.strip_suffix('/').unwrap_or(url);
    let authority = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(SupabaseUrlError::Scheme)?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((address, "")) => (Some(address), None),
            Some((address, after)) => (Some(address), Some(after.strip_prefix(':'))),
            None => (None, None),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (Some(host), Some(Some(port))),
            None => (Some(authority), None),
        },
    };
    let bracketed = authority.starts_with('[');
    let host_ok = host.is_some_and(|h| {
        !h.is_empty()
            && if bracketed {
                h.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            } else {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=%-".contains(&b))
            }
    });
    let port_ok = match port {
        None => true,
        Some(Some(p)) => is_port(p),
        Some(None) => false,
    };
    if host_ok && port_ok {
        Ok(url.to_owned())
    } else {
        Err(SupabaseUrlError::NotABaseUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_accepts_local_and_in_cluster_hosts() {
        for ok in [
            "http://ollama:11434",
            "http://localhost:11434/",
            "https://127.0.0.1:8443",
            "http://127.9.9.9",
            "http://[::1]:11434",
            "http://learning-ollama:11434/base",
            "http://ollama.ai-shared.svc:11434",
            "http://ollama.ai-shared.svc.cluster.local:11434/",
            "https://gpu-ollama.2026-shared.svc",
        ] {
            assert!(check_ollama_base_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_ollama_base_url(" http://ollama:11434/ ").unwrap(),
            "http://ollama:11434"
        );
    }

    #[test]
    fn ollama_refuses_public_hosts_and_numeric_names() {
        for bad in [
            "https://api.example.com",
            "http://8.8.8.8:11434",
            "http://10.0.0.5:11434",
            "http://134744072:11434",
            "http://0x08080808",
            "http://1ollama",
            "http://ollama.ai",
            "http://ollama.ai-shared",
            "http://ollama.ai-shared.svc.example.org",
            "http://ollama.ai-shared.svc.cluster.local.",
            "http://ollama.-shared.svc",
            "http://ollama.shared-.svc",
            "http://ollama..svc",
            "http://.svc",
            "http://a.b.c.svc",
            "http://ollama.ai-shared.SVC",
            "http://1ollama.ai-shared.svc",
        ] {
            assert!(
                matches!(check_ollama_base_url(bad), Err(OllamaUrlError::NotLocal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ollama_refuses_odd_urls() {
        for (bad, why) in [
            ("ftp://ollama", OllamaUrlError::Scheme),
            ("http://u:p@ollama:1", OllamaUrlError::Userinfo),
            ("http://ollama:0", OllamaUrlError::Port),
            ("http://ollama:99999", OllamaUrlError::Port),
            ("http://oll ama", OllamaUrlError::Malformed),
            ("http://ollama/?x=1", OllamaUrlError::Malformed),
            ("http://", OllamaUrlError::Malformed),
            ("http://[::1", OllamaUrlError::Malformed),
            ("http://ollama:+80", OllamaUrlError::Port),
            ("http://ollama:", OllamaUrlError::Port),
        ] {
            assert_eq!(check_ollama_base_url(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn an_external_ollama_is_another_pods_service() {
        assert!(check_external_ollama_url("https://gpu-ollama/").is_ok());
        for pod_itself in [
            "http://localhost:11434",
            "http://127.0.0.1",
            "http://[::1]:1",
        ] {
            assert!(
                matches!(
                    check_external_ollama_url(pod_itself),
                    Err(OllamaUrlError::PodItself(_))
                ),
                "{pod_itself}"
            );
        }
        assert!(check_external_ollama_url("http://ollama.example.org").is_err());
        assert!(check_external_ollama_url("http://ollama.ai-shared.svc:11434").is_ok());
    }

    #[test]
    fn in_cluster_hosts_name_their_service_and_namespace() {
        let host = |h| InClusterHost::parse(h);
        assert_eq!(
            host("ollama"),
            Some(InClusterHost {
                service: "ollama",
                namespace: None
            })
        );
        for h in ["ollama.ai-shared.svc", "ollama.ai-shared.svc.cluster.local"] {
            assert_eq!(
                host(h),
                Some(InClusterHost {
                    service: "ollama",
                    namespace: Some("ai-shared")
                }),
                "{h}"
            );
        }
        assert_eq!(host("ollama.ai"), None);
        assert_eq!(host("127.0.0.1"), None);
        assert_eq!(
            ollama_host_and_port("http://ollama.ai-shared.svc:11434/x"),
            Some(("ollama.ai-shared.svc", 11434))
        );
        assert_eq!(
            ollama_host_and_port("https://ollama"),
            Some(("ollama", 443))
        );
        assert_eq!(ollama_host_and_port("http://ollama"), Some(("ollama", 80)));
        assert_eq!(
            ollama_host_and_port("http://[::1]:8080"),
            Some(("::1", 8080))
        );
    }

    #[test]
    fn supabase_is_a_plain_base_url() {
        for ok in [
            "http://supabase-kong:8000",
            "http://supabase_kong_gustav:8000/",
            "https://db.example.org",
            "http://[::1]:8000",
            "http://kong:08000",
        ] {
            assert!(check_supabase_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_supabase_url("http://kong:8000/").unwrap(),
            "http://kong:8000"
        );
        assert!(check_supabase_url("https://").is_err());
        assert_eq!(
            check_supabase_url("ftp://kong"),
            Err(SupabaseUrlError::Scheme)
        );
        for bad in [
            "https://example.org/base/path",
            "https://user:pw@example.org",
            "https://example.org/?token=x",
            "https://example.org#frag",
            "https://exa mple.org",
            "http://kong\u{b}:8000",
            "http://kong\u{a0}:8000",
            "http://kong:abc",
            "http://kong:+80",
            "http://kong:0",
            "http://kong:65536",
            "http://kong:8000//",
            "http://[::1",
            "http://[::1]x",
            "http://kö.example",
        ] {
            assert_eq!(
                check_supabase_url(bad),
                Err(SupabaseUrlError::NotABaseUrl),
                "{bad}"
            );
        }
    }
}
