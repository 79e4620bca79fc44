//! Validation of `OLLAMA_BASE_URL` (contract §8): http or https, and only a local or in-cluster
//! host — `localhost`, a loopback address, or a dot-less service name. No public hosts (no cloud
//! egress for student work), no userinfo, no odd characters.

use std::net::IpAddr;

/// Why an Ollama base URL was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OllamaUrlError {
    /// Not `http://` or `https://`.
    #[error("OLLAMA_BASE_URL must start with http:// or https://")]
    Scheme,
    /// Contains `user:pass@`.
    #[error("OLLAMA_BASE_URL must not contain credentials (user@host)")]
    Userinfo,
    /// Characters outside the URL-safe set, or an empty host.
    #[error("OLLAMA_BASE_URL has a malformed host or characters that are not allowed")]
    Malformed,
    /// A port that is not a number in 1..=65535.
    #[error("OLLAMA_BASE_URL has an invalid port")]
    Port,
    /// A host that is neither loopback nor an in-cluster service name.
    #[error("OLLAMA_BASE_URL host '{0}' is not local: use localhost, a loopback address, or an in-cluster service name without dots")]
    NotLocal(String),
}

/// A DNS-1035 label (a Kubernetes service name): a letter first, then letters, digits or `-`,
/// not ending in `-`. Digit-only or `0x…` names are refused: URL parsers read them as IPv4
/// addresses (`http://134744072` is 8.8.8.8).
fn is_service_name(host: &str) -> bool {
    host.len() <= 63
        && host.starts_with(|c: char| c.is_ascii_alphabetic())
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !host.ends_with('-')
}

/// Checks `url` and returns it without a trailing slash.
pub fn validate_ollama_base_url(url: &str) -> Result<String, OllamaUrlError> {
    let url = url.trim();
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
        let after = &v6[close + 1..];
        let port = match after {
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
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(OllamaUrlError::Port),
        }
    }
    if host.is_empty() {
        return Err(OllamaUrlError::Malformed);
    }
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
        || (host.parse::<IpAddr>().is_err() && is_service_name(host));
    if !local {
        return Err(OllamaUrlError::NotLocal(host.to_owned()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_and_in_cluster_hosts() {
        for ok in [
            "http://ollama:11434",
            "http://localhost:11434/",
            "https://127.0.0.1:8443",
            "http://127.9.9.9",
            "http://[::1]:11434",
            "http://learning-ollama:11434/base",
        ] {
            assert!(validate_ollama_base_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            validate_ollama_base_url("http://ollama:11434/").unwrap(),
            "http://ollama:11434"
        );
    }

    #[test]
    fn refuses_public_hosts_and_addresses() {
        assert!(matches!(
            validate_ollama_base_url("https://api.example.com"),
            Err(OllamaUrlError::NotLocal(_))
        ));
        assert!(matches!(
            validate_ollama_base_url("http://8.8.8.8:11434"),
            Err(OllamaUrlError::NotLocal(_))
        ));
        assert!(matches!(
            validate_ollama_base_url("http://10.0.0.5:11434"),
            Err(OllamaUrlError::NotLocal(_))
        ));
    }

    #[test]
    fn refuses_numeric_hosts_that_parsers_read_as_addresses() {
        for bad in [
            "http://134744072:11434",
            "http://0x08080808",
            "http://0134744072",
            "http://1ollama",
        ] {
            assert!(
                matches!(
                    validate_ollama_base_url(bad),
                    Err(OllamaUrlError::NotLocal(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_odd_urls() {
        assert_eq!(
            validate_ollama_base_url("ftp://ollama"),
            Err(OllamaUrlError::Scheme)
        );
        assert_eq!(
            validate_ollama_base_url("http://u:p@ollama:1"),
            Err(OllamaUrlError::Userinfo)
        );
        assert_eq!(
            validate_ollama_base_url("http://ollama:0"),
            Err(OllamaUrlError::Port)
        );
        assert_eq!(
            validate_ollama_base_url("http://ollama:99999"),
            Err(OllamaUrlError::Port)
        );
        assert_eq!(
            validate_ollama_base_url("http://oll ama"),
            Err(OllamaUrlError::Malformed)
        );
        assert_eq!(
            validate_ollama_base_url("http://ollama/?x=1"),
            Err(OllamaUrlError::Malformed)
        );
        assert_eq!(
            validate_ollama_base_url("http://"),
            Err(OllamaUrlError::Malformed)
        );
    }
}
