use serde::Deserialize;

/// Where Redis is and how long to wait for it: the `[redis]` section of Sesame's settings.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port[/db]`, or `rediss://…` for TLS (ElastiCache with
    /// in-transit encryption). The password (or ACL user and password) comes from the URL: pass
    /// it as `SESAME__REDIS__URL` from a secret store.
    pub url: String,
    /// A PEM file of the CAs to trust for `rediss://` instead of the system roots (empty: the
    /// system roots, which hold Amazon's).
    pub ca_file: String,
    /// Speak Redis Cluster (ElastiCache with cluster mode enabled): `url` is then the seed node or
    /// configuration endpoint, and the other nodes are learnt from it.
    pub cluster: bool,
    /// Put in front of every key, so several deployments (or tests) can share one Redis.
    /// End it with a separator (`sesame:`); it may not contain `{` or `}`, which would break
    /// the hash tag (see the crate docs).
    pub key_prefix: String,
    /// The most any one call (connecting included) waits for Redis before it fails.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            ca_file: String::new(),
            cluster: false,
            key_prefix: "sesame:".into(),
            timeout_ms: 250,
        }
    }
}

/// The URL may carry a password: show only what follows the credentials.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("ca_file", &self.ca_file)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = RedisConfig { url: "redis://:hunter2@cache:6379/0".into(), ..RedisConfig::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://***@cache:6379/0"), "{shown}");
    }

    #[test]
    fn settings_fill_in_defaults_and_refuse_unknown_keys() {
        let config: RedisConfig = toml::from_str("key_prefix = \"prod:\"").unwrap();
        assert_eq!(config, RedisConfig { key_prefix: "prod:".into(), ..RedisConfig::default() });
        assert_eq!(config.timeout_ms, 250);
        assert!(toml::from_str::<RedisConfig>("timeout = 5").is_err());
    }
}
