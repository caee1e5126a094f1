//! Image references (`name[:tag]`), with Docker's rules for what is valid and
//! its short form for what is shown (`busybox:latest` for
//! `docker.io/library/busybox:latest`).

use std::fmt;

use super::Error;

/// A repository name and a tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// The repository, in its short form (`busybox`, `example.com:5000/app`).
    pub repo: String,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

fn component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn domain_ok(d: &str) -> bool {
    let (host, port) = d.rsplit_once(':').unwrap_or((d, ""));
    !host.is_empty()
        && host
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-'))
        && port.bytes().all(|x| x.is_ascii_digit())
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses `name[:tag]`; the name may carry a registry (`host[:port]/`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadReference(s.to_string(), why.to_string());
        if s.contains('@') {
            return Err(bad(
                "digest references are not supported; use a tag or an image id",
            ));
        }
        let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if !tag_ok(tag) {
            return Err(bad(
                "a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
            ));
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let has_domain = parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
        if has_domain && !domain_ok(parts[0]) {
            return Err(bad("invalid registry host"));
        }
        let path_from = if has_domain { 1 } else { 0 };
        if parts[path_from..].iter().any(|c| !component_ok(c)) {
            return Err(bad(
                "name components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
        // Docker's short form: the default registry and its library/ are implied.
        if has_domain && matches!(parts[0], "docker.io" | "index.docker.io") {
            parts.remove(0);
            if parts.len() == 2 && parts[0] == "library" {
                parts.remove(0);
            }
        }
        Ok(Reference {
            repo: parts.join("/"),
            tag: tag.to_string(),
        })
    }

    /// The fully qualified form containerd uses (`docker.io/library/busybox:latest`).
    pub fn full(&self) -> String {
        let first = self.repo.split('/').next().unwrap_or("");
        let has_domain = self.repo.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if has_domain {
            format!("{}:{}", self.repo, self.tag)
        } else if self.repo.contains('/') {
            format!("docker.io/{}:{}", self.repo, self.tag)
        } else {
            format!("docker.io/library/{}:{}", self.repo, self.tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        let r = |s: &str| Reference::parse(s).map(|r| r.to_string());
        assert_eq!(r("busybox").unwrap(), "busybox:latest");
        assert_eq!(r("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(r("docker.io/library/busybox:1").unwrap(), "busybox:1");
        assert_eq!(r("docker.io/me/app").unwrap(), "me/app:latest");
        assert_eq!(r("localhost:5000/a/b:v2").unwrap(), "localhost:5000/a/b:v2");
        assert_eq!(r("my-app__x.y").unwrap(), "my-app__x.y:latest");
        for bad in [
            "",
            "Busybox",
            "a:",
            "a:-x",
            "a/:b",
            "a//b",
            "-a",
            "a@sha256:00",
            "a:b:c",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Reference::parse("busybox").unwrap().full(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            Reference::parse("me/app:1").unwrap().full(),
            "docker.io/me/app:1"
        );
        assert_eq!(
            Reference::parse("quay.io/x/y:2").unwrap().full(),
            "quay.io/x/y:2"
        );
    }
}
