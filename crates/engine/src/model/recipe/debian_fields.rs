//! Debian's syntax for the fields of a source's `debian = { ... }` origin (Debian Policy).

/// Debian package name syntax (Policy 5.6.1): lowercase letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit.
pub(crate) fn is_debian_package(s: &str) -> bool {
    s.len() >= 2
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Debian version syntax (Policy 5.6.12): `[EPOCH:]UPSTREAM[-REVISION]`, upstream starting
/// with a digit, from `A-Za-z0-9.+~-`.
pub(crate) fn is_debian_version(s: &str) -> bool {
    let rest = match s.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            rest
        }
        None => s,
    };
    rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~-".contains(&b))
}

/// A file name in the Debian archive's pool: no directories, from `A-Za-z0-9.+~_-`.
pub(crate) fn is_debian_file(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~_-".contains(&b))
}
