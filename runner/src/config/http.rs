//! The HTTP section: the listen address and the health endpoint's token.

use std::net::SocketAddr;

use super::{invalid, ConfigError};
use crate::cli::Settings;
use crate::db::dsn::Secret;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Bearer token for the health endpoint.
    pub health_token: Option<Secret>,
}

/// The HTTP settings.
pub fn http_config(settings: &Settings) -> Result<HttpConfig, ConfigError> {
    let addr = settings.http_addr.parse::<SocketAddr>().map_err(|_| {
        invalid(
            "LEARNING_HTTP_ADDR",
            format!(
                "'{}' is not an address like 0.0.0.0:8080",
                settings.http_addr
            ),
        )
    })?;
    Ok(HttpConfig {
        addr,
        health_token: settings
            .health_token
            .clone()
            .filter(|t| !t.expose().is_empty()),
    })
}
