//! Values and modifiers, one behaviour each.

use base64::Engine as _;

use super::*;

fn test_of(key: &str, yaml: &str) -> FieldTest {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
    let mut names: Vec<String> = Vec::new();
    let mut intern = |n: &str| {
        names.push(n.to_owned());
        names.len() as FieldId - 1
    };
    compile_field(key, &value, &mut intern).expect("compiles")
}

fn any_matches(t: &FieldTest, value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    t.matchers.iter().any(|m| match m {
        Matcher::Str { pat, cased } => pat.matches(if *cased { value } else { &lower }),
        Matcher::Contains(literals) => literals.in_value(&lower),
        Matcher::Regex(re) => re.is_match(value),
        Matcher::Cidr { net, bits } => value.parse().is_ok_and(|ip| in_network(ip, *net, *bits)),
        _ => false,
    })
}

#[test]
fn placement_wildcards_and_case() {
    let t = test_of("Image|endswith", "'\\powershell.exe'");
    assert!(any_matches(
        &t,
        "C:\\Windows\\PowerShell.EXE"
            .replace("PowerShell", "\\powershell")
            .as_str()
    ));
    assert!(!any_matches(&t, "C:\\pwsh.exe"));
    let t = test_of("CommandLine|contains", "['-enc ', ' -ec ']");
    assert!(any_matches(&t, "powershell.exe -ENC abc"));
    let t = test_of("CommandLine", "'*\\\\temp\\\\*.ps1'");
    assert!(any_matches(&t, "run C:\\TEMP\\x.ps1"), "{:?}", t.matchers);
    let t = test_of("CommandLine", "'a?c'");
    assert!(any_matches(&t, "abc") && !any_matches(&t, "abbc"));
    let t = test_of("CommandLine", "'literal\\*star'");
    assert!(any_matches(&t, "literal*star") && !any_matches(&t, "literalXstar"));
    let t = test_of("CommandLine|contains|cased", "'Invoke'");
    assert!(any_matches(&t, "x Invoke y") && !any_matches(&t, "x invoke y"));
}

#[test]
fn wildcards_match_as_the_regular_expression_they_stand_for() {
    // Random patterns and values over a few characters, some of them several bytes long, so
    // that a `?` must take one character however many bytes it has.
    let mut rng = crate::sigma::testing::Lcg(11);
    let pattern_chars = ['a', 'b', 'é', '😀', '*', '?', '?'];
    let value_chars = ['a', 'b', 'é', '😀'];
    let mut globs = 0;
    for _ in 0..2000 {
        let len = rng.next(8);
        let pattern: String = (0..len).map(|_| pattern_chars[rng.next(pattern_chars.len())]).collect();
        let src: String = pattern
            .chars()
            .map(|c| match c {
                '*' => ".*".to_owned(),
                '?' => ".".to_owned(),
                c => regex::escape(&c.to_string()),
            })
            .collect();
        for (place, re) in [
            (Place::Exact, format!("^{src}$")),
            (Place::Contains, format!("^.*{src}.*$")),
            (Place::Starts, format!("^{src}.*$")),
            (Place::Ends, format!("^.*{src}$")),
        ] {
            let re = Regex::new(&format!("(?s){re}")).expect("compiles");
            let pat = wildcard_pattern(&pattern, place);
            globs += usize::from(matches!(pat, StrPat::Glob(_)));
            for _ in 0..24 {
                let len = rng.next(9);
                let value: String = (0..len).map(|_| value_chars[rng.next(value_chars.len())]).collect();
                assert_eq!(
                    pat.matches(&value),
                    re.is_match(&value),
                    "{pattern:?} ({place:?}) on {value:?}"
                );
            }
        }
    }
    assert!(globs > 1000, "{globs}");

    // Sigma's own shape: a one-character hole for either quote, inside `contains`, without a
    // regular expression; lowered values against a lowered pattern.
    let t = test_of("CommandLine|contains", "['>?%TEMP%\\', 'zzz']");
    assert!(
        matches!(
            &t.matchers[0],
            Matcher::Str {
                pat: StrPat::Glob(_),
                cased: false
            }
        ),
        "{:?}",
        t.matchers
    );
    assert_eq!(t.matchers[0].needles(), Some(vec!["%temp%\\".to_owned()]));
    assert!(any_matches(&t, "cmd /c dir >\"%Temp%\\out.txt\""));
    assert!(any_matches(&t, "cmd /c dir >>%TEMP%\\out.txt"));
    assert!(any_matches(&t, "cmd /c dir > %TEMP%\\out.txt"));
    assert!(!any_matches(&t, "cmd /c dir >  %TEMP%\\out.txt"));
    assert!(!any_matches(&t, "cmd /c dir >%TEMP%\\out.txt"));
}

#[test]
fn a_list_of_contains_values_is_searched_at_once_and_matches_as_each_would() {
    let merged = |t: &FieldTest| t.matchers.iter().filter(|m| matches!(m, Matcher::Contains(_))).count();
    let list = "['^^', ',;,', ' c^m^d', '%COMSPEC:~', ' s^et ']";
    let t = test_of("CommandLine|contains", list);
    assert_eq!((merged(&t), t.matchers.len()), (1, 1));
    for (value, expected) in [
        ("cmd /c ec^^ho", true),
        ("X ,;, Y", true),
        ("%comspec:~0,1%", true),
        ("CMD /C  C^M^D", true),
        ("cmd /c set x", false),
        ("", false),
    ] {
        assert_eq!(any_matches(&t, value), expected, "{value}");
        let one_by_one = ["^^", ",;,", " c^m^d", "%comspec:~", " s^et "]
            .iter()
            .any(|l| value.to_ascii_lowercase().contains(l));
        assert_eq!(expected, one_by_one, "{value}");
    }
    // With other kinds of values beside them, and an empty value that every value contains.
    let t = test_of("CommandLine|contains", "['a1', 'b2', 'c3', 'd4', '']");
    assert!(any_matches(&t, "zzz"));
    let t = test_of("CommandLine", "['*a1*', '*b2*', '*c3*', '*d4*', 'exact']");
    assert_eq!((merged(&t), t.matchers.len()), (1, 2));
    assert!(any_matches(&t, "EXACT") && any_matches(&t, "xxD4") && !any_matches(&t, "exactly"));
    // Too few, cased, or every one required: kept one by one.
    for (key, list) in [
        ("CommandLine|contains", "['a1', 'b2', 'c3']"),
        ("CommandLine|contains|cased", "['a1', 'b2', 'c3', 'd4']"),
        ("CommandLine|contains|all", "['a1', 'b2', 'c3', 'd4']"),
    ] {
        assert_eq!(merged(&test_of(key, list)), 0, "{key}");
    }
    let t = test_of("CommandLine|contains|cased", "['A1', 'b2', 'c3', 'd4']");
    assert!(any_matches(&t, "xA1") && !any_matches(&t, "xa1"));
}

#[test]
fn encodings() {
    let t = test_of("CommandLine|base64offset|contains", "'IEX'");
    // "IEX (" at three offsets, base64'd
    for text in ["IEX (New", "aIEX (New", "abIEX (New"] {
        let enc = base64::engine::general_purpose::STANDARD.encode(text);
        assert!(any_matches(&t, &enc), "{text} -> {enc}");
    }
    let t = test_of("CommandLine|wide|base64offset|contains", "'IEX'");
    let wide: Vec<u8> = "IEX (New".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(any_matches(&t, &base64::engine::general_purpose::STANDARD.encode(wide)));
    let t = test_of("CommandLine|base64", "'whoami'");
    assert!(any_matches(&t, "d2hvYW1p"));
    let t = test_of("CommandLine|windash|contains", "' -enc '");
    for v in [
        "x -enc y",
        "x /enc y",
        "x \u{2013}enc y",
        "x \u{2014}enc y",
        "x \u{2015}enc y",
    ] {
        assert!(any_matches(&t, v), "{v}");
    }
}

#[test]
fn regex_cidr_and_numbers() {
    let t = test_of("CommandLine|re", "'\\-[Ee]nc(odedCommand)? '");
    assert!(any_matches(&t, "ps -EncodedCommand x"));
    let t = test_of("CommandLine|re|i", "'invoke-mimikatz'");
    assert!(any_matches(&t, "Invoke-Mimikatz"));
    let t = test_of("DestinationIp|cidr", "['10.0.0.0/8', 'fe80::/10']");
    assert!(any_matches(&t, "10.2.3.4") && any_matches(&t, "fe80::1") && !any_matches(&t, "11.0.0.1"));
    let t = test_of("Count|gt", "5");
    assert!(matches!(t.matchers[0], Matcher::Num(Cmp::Gt, n) if n == 5.0));
}

#[test]
fn unsupported_values_say_why() {
    let mut intern = |_: &str| 0;
    let bad = |key: &str, yaml: &str, intern: &mut dyn FnMut(&str) -> FieldId| {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
        compile_field(key, &value, intern).expect_err("refused")
    };
    assert!(bad("CommandLine|re", "'(?<=x)y'", &mut intern).contains("regex"));
    assert!(bad("User|expand", "'%Admins%'", &mut intern).contains("placeholder"));
    assert!(bad("X|frobnicate", "'a'", &mut intern).contains("frobnicate"));
    assert!(bad("X|cidr", "'not-a-net'", &mut intern).contains("network"));
}

#[test]
fn a_regex_is_checked_at_compile_and_built_at_first_use() {
    let t = test_of("CommandLine|re", "'\\s-(e|en|enc)\\s+[A-Za-z0-9+/=]{20,}'");
    let Some(Matcher::Regex(re)) = t.matchers.first() else {
        panic!("a regex matcher: {:?}", t.matchers)
    };
    assert!(!re.is_built());
    assert!(any_matches(&t, "powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBi"));
    assert!(re.is_built());
    assert!(!any_matches(&t, "powershell -enc short"));

    let value: serde_yaml::Value = serde_yaml::from_str("'(unclosed'").expect("yaml");
    let err = compile_field("CommandLine|re", &value, &mut |_| 0).expect_err("an invalid regex");
    assert!(err.contains("regex `(unclosed`"), "{err}");
}

#[test]
fn a_regex_needle_is_its_most_selective_required_literal() {
    let needles = |src: &str| {
        regex_needles(src).map(|mut n| {
            n.sort();
            n
        })
    };
    // The prefix is only `.exe`; a later run of literal characters is longer.
    let wsass = r#"(?i)\.exe[\"\']?\s+[^\"]{0,64}werfaultsecure\.exe[\"\']?\s+\d{2,10}"#;
    let chosen = needles(wsass).expect("needles");
    assert_eq!(chosen, ["ecure.exe"], "`s` also folds to U+017F, so it ends a run");
    assert_eq!(needles(r"-k\s\w{1,64}(?:\s?(?:-p|-s))?").expect("needles"), ["-k"]);
    assert_eq!(needles(r"\\Temp\\[a-z]{8}\.dll$").expect("needles"), ["\\temp\\"]);
    // Four prefixes of 17 bytes and more beat one run of 8.
    assert_eq!(
        needles(r"(?:cmd|pwsh)\.exe /c (?:whoami|net user)").expect("needles"),
        [
            "cmd.exe /c net user",
            "cmd.exe /c whoami",
            "pwsh.exe /c net user",
            "pwsh.exe /c whoami"
        ]
    );
    for none in [r".{1000,}", r"(a|.*)", r"\w+\s*", ""] {
        assert_eq!(needles(none), None, "{none}");
    }
    // Whatever is chosen, every value the expression matches holds one of them, lowered.
    for (src, value) in [
        (wsass, r#""C:\T\wsass.EXE" C:\W\WerFaultSecure.exe 1234"#),
        (r"\\Temp\\[a-z]{8}\.dll$", r"C:\Temp\abcdefgh.dll"),
        (r"(?:cmd|pwsh)\.exe /c (?:whoami|net user)", "cmd.exe /c net user"),
    ] {
        assert!(Regex::new(src).expect("compiles").is_match(value), "{src}");
        let lower = value.to_ascii_lowercase();
        assert!(
            needles(src)
                .expect("needles")
                .iter()
                .any(|n| lower.contains(n.as_str())),
            "{src} on {value}"
        );
    }
}
