//! Text helpers of rule evaluation: the commands of a shell command line, event-type globs,
//! and ASCII lower-casing into a reused buffer. Pure functions over `&str`.

/// An event-type pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Glob {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl Glob {
    /// Parses `x`, `x*`, `*x` or `*` (lower-cased); `None` for any other form.
    pub(super) fn parse(s: &str) -> Option<Glob> {
        let s = s.trim().to_ascii_lowercase();
        let stars = s.matches('*').count();
        match (stars, s.strip_suffix('*'), s.strip_prefix('*')) {
            (0, ..) if !s.is_empty() => Some(Glob::Exact(s.into())),
            (1, _, _) if s == "*" => Some(Glob::Any),
            (1, Some(prefix), _) => Some(Glob::Prefix(prefix.into())),
            (1, _, Some(suffix)) => Some(Glob::Suffix(suffix.into())),
            _ => None,
        }
    }

    /// True when the event type matches, ignoring ASCII case.
    pub(super) fn matches(&self, et: &str) -> bool {
        let (b, n) = (et.as_bytes(), |p: &str| p.len());
        match self {
            Glob::Any => true,
            Glob::Exact(e) => et.eq_ignore_ascii_case(e),
            Glob::Prefix(p) => b.len() >= n(p) && b[..n(p)].eq_ignore_ascii_case(p.as_bytes()),
            Glob::Suffix(s) => b.len() >= n(s) && b[b.len() - n(s)..].eq_ignore_ascii_case(s.as_bytes()),
        }
    }
}

/// Commands of a shell command line: the first word of every pipeline or list element, with
/// the path and a `.exe` suffix stripped and `sudo`/`nohup`/`busybox`/`env`/`VAR=value`
/// prefixes skipped.
pub fn command_words(line: &str) -> impl Iterator<Item = &str> {
    line.split(['\n', ';', '|', '&', '(', ')', '`', '{', '}'])
        .filter_map(|segment| {
            segment
                .split_ascii_whitespace()
                .map(|w| w.trim_matches(['"', '\'', '$', '!']))
                .filter(|w| !w.is_empty())
                .find(|w| !is_prefix_word(w))
                .map(|w| {
                    let base = w.rsplit(['/', '\\']).next().unwrap_or(w);
                    match base.len().checked_sub(4) {
                        Some(cut) if base.is_char_boundary(cut) && base[cut..].eq_ignore_ascii_case(".exe") => {
                            &base[..cut]
                        }
                        _ => base,
                    }
                })
                .filter(|w| !w.is_empty())
        })
}

/// Words before the command itself: wrappers, shell keywords, options and `VAR=value`.
fn is_prefix_word(w: &str) -> bool {
    const WRAPPERS: &[&str] = &[
        "sudo", "nohup", "busybox", "env", "exec", "command", "time", "nice", "then", "do", "else",
    ];
    WRAPPERS.contains(&w) || w.starts_with('-') || (w.contains('=') && !w.starts_with('/'))
}

/// Lower-cases ASCII into `buf` (reused) unless already lower-case.
pub(super) fn lower_into<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        buf.clear();
        buf.push_str(text);
        buf.make_ascii_lowercase();
        buf.as_str()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_finds_every_command_of_a_line() {
        let words: Vec<&str> =
            command_words("mkdir -p ~/.ssh && echo 'x' >> ~/.ssh/authorized_keys; sudo /usr/bin/id | wc -l").collect();
        assert_eq!(words, ["mkdir", "echo", "id", "wc"]);
        let words: Vec<&str> = command_words("HISTFILE=/dev/null busybox wget http://x/y; $(curl -s z)").collect();
        assert_eq!(words, ["wget", "curl"]);
        assert_eq!(
            command_words("cat /proc/cpuinfo | grep name | wc -l").collect::<Vec<_>>(),
            ["cat", "grep", "wc"]
        );
        assert_eq!(
            command_words(r"C:\Windows\System32\WHOAMI.EXE /all").collect::<Vec<_>>(),
            ["WHOAMI"]
        );
    }

    #[test]
    fn globs_cover_exact_prefix_suffix_and_any() {
        assert!(Glob::parse("cowrie.*").expect("glob").matches("cowrie.login.failed"));
        assert!(!Glob::parse("cowrie.*").expect("glob").matches("zeek.notice"));
        assert!(Glob::parse("*.alert").expect("glob").matches("Suricata.Alert"));
        assert!(Glob::parse("*").expect("glob").matches("anything"));
        assert!(Glob::parse("port_scan").expect("glob").matches("PORT_SCAN"));
        assert_eq!(Glob::parse("a*b*"), None);
        assert_eq!(Glob::parse("a*b"), None);
    }
}
