//! Connection URLs carry passwords (`redis://:pw@host`, `postgres://u:pw@host/db?password=pw`):
//! this is how every log line, error and `Debug` output shows them.

/// `url` with its password and any secret-looking query value replaced by `***`.
pub fn redact_url(url: &str) -> String {
    // A list of cluster seeds: each one may carry a password.
    if url.contains(",redis://") {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None if userinfo.is_empty() => format!("@{host}"),
                    // `redis://password@host` is read as a password by some clients.
                    None => format!("***@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_name(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_and_secret_query_values_are_hidden() {
        for (url, shown) in [
            (
                "redis://:s3cret@10.0.0.1:6379/0",
                "redis://:***@10.0.0.1:6379/0",
            ),
            (
                "redis://default:s3cret@cache:6379",
                "redis://default:***@cache:6379",
            ),
            (
                "redis://:a@h1:7000,redis://:b@h2:7000",
                "redis://:***@h1:7000,redis://:***@h2:7000",
            ),
            (
                "redis+cluster://app:s3cret@h1:7000,h2:7000",
                "redis+cluster://app:***@h1:7000,h2:7000",
            ),
            ("redis://s3cret@cache", "redis://***@cache"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "postgres://app:pw@db/steadfast?sslmode=require&password=pw",
                "postgres://app:***@db/steadfast?sslmode=require&password=***",
            ),
            (
                "sqlite://steadfast.db?mode=rwc",
                "sqlite://steadfast.db?mode=rwc",
            ),
            (
                "https://hooks.example/x?token=abc&a=1",
                "https://hooks.example/x?token=***&a=1",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("s3cret"));
        }
    }
}
