//! Which web origins may use the server from a browser.

use std::str::FromStr;

/// Allowed origins: exact (`https://app.example.com`) or a wildcard host
/// (`https://*.preview.example.com`, any subdomain at any depth, not the bare domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Scheme (`https://`), and the suffix every allowed host ends with (`.preview.example.com`),
    /// and the port part (`:8443` or empty).
    Subdomains {
        scheme: String,
        suffix: String,
        port: String,
    },
}

impl AllowedOrigins {
    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(o) => *o == origin,
            Pattern::Subdomains {
                scheme,
                suffix,
                port,
            } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_suffix(port.as_str()))
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|sub| {
                    !sub.is_empty()
                        && sub
                            .split('.')
                            .all(|label| !label.is_empty() && label.bytes().all(is_host_byte))
                }),
        })
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl FromStr for AllowedOrigins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut patterns = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry = entry.trim_end_matches('/').to_ascii_lowercase();
            let (scheme, rest) = entry
                .split_once("://")
                .ok_or_else(|| format!("`{entry}`: an origin is scheme://host[:port]"))?;
            if rest.contains('/') {
                return Err(format!("`{entry}`: an origin has no path"));
            }
            let pattern = match rest.strip_prefix("*.") {
                Some(host_and_port) => {
                    let (host, port) = match host_and_port.rsplit_once(':') {
                        Some((h, p)) => (h, format!(":{p}")),
                        None => (host_and_port, String::new()),
                    };
                    Pattern::Subdomains {
                        scheme: format!("{scheme}://"),
                        suffix: format!(".{host}"),
                        port,
                    }
                }
                None if rest.contains('*') => {
                    return Err(format!(
                        "`{entry}`: `*.` is only allowed at the start of the host"
                    ));
                }
                None => Pattern::Exact(entry.clone()),
            };
            patterns.push(pattern);
        }
        if patterns.is_empty() {
            return Err("no origins given".into());
        }
        Ok(Self { patterns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_match_exactly() {
        let o: AllowedOrigins = "https://app.example.com, http://localhost:3000"
            .parse()
            .unwrap();
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(o.allows("http://localhost:3000"));
        assert!(!o.allows("http://app.example.com"));
        assert!(!o.allows("https://app.example.com.evil.net"));
        assert!(!o.allows("http://localhost:3001"));
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_domain_itself() {
        let o: AllowedOrigins = "https://*.preview.example.com".parse().unwrap();
        assert!(o.allows("https://pr-42.preview.example.com"));
        assert!(o.allows("https://a.b.preview.example.com"));
        assert!(!o.allows("https://preview.example.com"));
        assert!(!o.allows("https://evilpreview.example.com"));
        assert!(!o.allows("http://pr-42.preview.example.com"));
        assert!(!o.allows("https://x.preview.example.com:8443"));
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert!("app.example.com".parse::<AllowedOrigins>().is_err());
        assert!("https://a.*.example.com".parse::<AllowedOrigins>().is_err());
        assert!("".parse::<AllowedOrigins>().is_err());
    }
}
