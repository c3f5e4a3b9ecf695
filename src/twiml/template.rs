//! URI templates in TwiML URLs, such as `https://app.example/audio/{Digits}.mp3`.
//!
//! A `{Name}` is replaced by the call parameter `Name` (`Digits`, `From`,
//! `CallSid`, …), percent-encoded so the value cannot change the URL's structure:
//! a caller's `+1 555/…` must not add a path segment or a query. Only RFC 3986's
//! unreserved characters are left as they are. Anything that does not look like a
//! placeholder is copied unchanged, so ordinary URLs (and JSON in query strings,
//! stray braces) go through untouched.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Fills each `{Name}` in `template` with the percent-encoded value of
/// `params(Name)`.
///
/// A name is one or more ASCII letters, digits or `_` (Twilio's parameter names);
/// a parameter the call does not have becomes empty, as in Twilio. A `{` that does
/// not open such a name (`{`, `{}`, `{a b}`, a lone `}`) stays literal, so the
/// function never fails. The executor passes a lookup over the call's current
/// webhook parameters.
pub fn fill_template(template: &str, params: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            if let Some(value) = params(name) {
                out.extend(utf8_percent_encode(&value, COMPONENT));
            }
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str) -> Option<String> {
        let value = match name {
            "Digits" => "1234",
            "From" => "+15551234567",
            "Space" => "a b",
            "Slash" => "a/b?c=d&e#f",
            "Unicode" => "Zoë 日本",
            "Unreserved" => "A-z_0.9~",
            "Braces" => "{Digits}",
            "Empty" => "",
            _ => return None,
        };
        Some(value.to_owned())
    }

    #[test]
    fn table() {
        let cases = [
            // present
            (
                "https://app/audio/{Digits}.mp3",
                "https://app/audio/1234.mp3",
            ),
            ("{Digits}{Digits}", "12341234"),
            ("{Digits}", "1234"),
            // missing and empty
            ("https://app/{Nope}.mp3", "https://app/.mp3"),
            ("x{Empty}y", "xy"),
            // encoding
            ("/c?from={From}", "/c?from=%2B15551234567"),
            ("/{Space}", "/a%20b"),
            ("/{Slash}", "/a%2Fb%3Fc%3Dd%26e%23f"),
            ("/{Unicode}", "/Zo%C3%AB%20%E6%97%A5%E6%9C%AC"),
            ("/{Unreserved}", "/A-z_0.9~"),
            // a value is not expanded again
            ("/{Braces}", "/%7BDigits%7D"),
            // unbalanced and non-placeholders stay literal
            ("https://app/a{b", "https://app/a{b"),
            ("a}b", "a}b"),
            ("{", "{"),
            ("}", "}"),
            ("{}", "{}"),
            ("{{Digits}}", "{1234}"),
            ("{Digits", "{Digits"),
            ("{Di gits}", "{Di gits}"),
            ("{Digits}}", "1234}"),
            ("{{", "{{"),
            ("{é}", "{é}"),
            ("no braces at all", "no braces at all"),
            ("", ""),
        ];
        for (template, expected) in cases {
            assert_eq!(fill_template(template, &params), expected, "{template}");
        }
    }

    #[test]
    fn closures_over_call_state_work() {
        let digits = String::from("42");
        let lookup = |name: &str| (name == "Digits").then(|| digits.clone());
        assert_eq!(fill_template("/{Digits}/{To}", &lookup), "/42/");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_brace_free_text(template in "\\PC*") {
            let filled = fill_template(&template, &params);
            if !template.contains('{') {
                proptest::prop_assert_eq!(filled, template);
            }
        }
    }
}
