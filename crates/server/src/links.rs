//! The URLs Silo puts in emails and redirects between hosts, built from configuration only.
//!
//! A link built from a request's `Host` (or `X-Forwarded-Host`, `Forwarded`) can be pointed
//! anywhere by whoever sends the request: a password-reset email for the victim, asked for
//! with `Host: evil.example`, would carry the reset token to `evil.example`. So every link
//! starts from `server.public_url`. When that is unset, a server bound to a loopback address
//! (the embedded default, `127.0.0.1:8080`) uses `http://<bind address>`, which only this
//! machine can reach anyway; any other bind refuses to start and names the setting.

use std::net::SocketAddr;

use actix_web::http::Uri;

/// The public origin (`scheme://host[:port]`, no trailing slash) and how to reach a
/// workspace's own host.
#[derive(Clone, Debug)]
pub struct Links {
    origin: String,
    https: bool,
    /// `:port` of the public origin, or empty.
    port: String,
    base_domain: Option<String>,
}

impl Links {
    /// From `server.public_url` (validated), else the loopback address the server listens on.
    pub fn resolve(
        public_url: Option<&str>,
        base_domain: Option<&str>,
        listening: SocketAddr,
    ) -> anyhow::Result<Self> {
        let base_domain =
            base_domain.map(|d| d.trim_matches('.').to_ascii_lowercase()).filter(|d| !d.is_empty());
        let url = match public_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if listening.ip().is_loopback() => format!("http://{listening}"),
            None => anyhow::bail!(
                "server.public_url is not set and silo listens on {listening}, which is not a loopback address: \
                 links in emails (sign-up confirmations, password resets, invitations) are built only from \
                 server.public_url, never from request headers. Set it to the address people use, e.g. \
                 `public_url = \"https://silo.example.com\"` under [server] in silo.toml or \
                 SILO_SERVER__PUBLIC_URL=https://silo.example.com"
            ),
        };
        let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("server.public_url `{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!("server.public_url `{url}` must start with http:// or https://"),
        };
        let Some(authority) = uri.authority() else {
            anyhow::bail!("server.public_url `{url}` has no host");
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() || authority.as_str().contains('@') {
            anyhow::bail!(
                "server.public_url `{url}` must be an origin only (scheme, host and port; no path or query)"
            );
        }
        let port = authority.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        let origin =
            format!("{}://{}", if https { "https" } else { "http" }, authority.as_str().to_ascii_lowercase());
        Ok(Self { origin, https, port, base_domain })
    }

    /// `scheme://host[:port]` of the main host.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the public URL is HTTPS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The main host's URL of `path` (which starts with `/`).
    pub fn main(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The URL of `path` on a workspace's own host (`{slug}.{base_domain}`, same scheme and
    /// port as the public URL), when a base domain is configured.
    pub fn workspace(&self, slug: &str, path: &str) -> Option<String> {
        let base = self.base_domain.as_deref()?;
        let scheme = if self.https { "https" } else { "http" };
        Some(format!("{scheme}://{slug}.{base}{}{path}", self.port))
    }

    /// `scheme://*.{base_domain}[:port]`, the CSP source of every workspace host.
    pub fn workspace_wildcard(&self) -> Option<String> {
        let base = self.base_domain.as_deref()?;
        let scheme = if self.https { "https" } else { "http" };
        Some(format!("{scheme}://*.{base}{}", self.port))
    }

    /// The workspace whose own host `host` (a `Host` header value) is, if any.
    pub fn workspace_of_host(&self, host: &str) -> Option<silo_core::TenantSlug> {
        let base = self.base_domain.as_deref()?;
        let host = host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host });
        let host = host.to_ascii_lowercase();
        let label = host.strip_suffix(base)?.strip_suffix('.')?;
        if label.contains('.') {
            return None;
        }
        silo_core::TenantSlug::parse(label).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    #[test]
    fn links_come_from_the_public_url_or_a_loopback_bind_only() {
        let configured =
            Links::resolve(Some("https://Silo.Example.com/"), None, "0.0.0.0:8080".parse().unwrap()).unwrap();
        assert_eq!(configured.main("/password/reset/x"), "https://silo.example.com/password/reset/x");
        assert!(configured.is_https());
        let loopback = Links::resolve(None, None, local()).unwrap();
        assert_eq!(loopback.main("/login"), "http://127.0.0.1:8080/login");
        assert!(!loopback.is_https());
        let v6 = Links::resolve(None, None, "[::1]:9000".parse().unwrap()).unwrap();
        assert_eq!(v6.origin(), "http://[::1]:9000");
        let refused = Links::resolve(None, None, "0.0.0.0:8080".parse().unwrap()).unwrap_err().to_string();
        assert!(refused.contains("server.public_url") && refused.contains("0.0.0.0:8080"), "{refused}");
        for bad in [
            "ftp://x.example",
            "https://x.example/app",
            "https://x.example/?a=1",
            "silo.example.com",
            "https://user@x.example",
        ] {
            assert!(Links::resolve(Some(bad), None, local()).is_err(), "{bad}");
        }
    }

    #[test]
    fn workspace_hosts_are_recognised_and_built() {
        let links =
            Links::resolve(Some("http://silo.example.com:8080"), Some("silo.example.com"), local()).unwrap();
        assert_eq!(links.workspace_of_host("acme.silo.example.com").unwrap().as_str(), "acme");
        assert_eq!(links.workspace_of_host("ACME.silo.example.com:8080").unwrap().as_str(), "acme");
        assert!(links.workspace_of_host("silo.example.com").is_none());
        assert!(links.workspace_of_host("a.b.silo.example.com").is_none());
        assert!(links.workspace_of_host("acme.evil.com").is_none());
        assert!(links.workspace_of_host("x.silo.example.com").is_none(), "not a valid slug");
        assert_eq!(
            links.workspace("acme", "/_handoff").unwrap(),
            "http://acme.silo.example.com:8080/_handoff"
        );
        assert_eq!(links.workspace_wildcard().unwrap(), "http://*.silo.example.com:8080");
        let without = Links::resolve(None, None, local()).unwrap();
        assert!(
            without.workspace_of_host("acme.silo.example.com").is_none()
                && without.workspace("acme", "/").is_none()
        );
    }
}
