//! Mail addresses: the sender of notifications (a template's `from:`, `notifications export
//! --from`) and a user's `usr_email`. One parser for both sides, so that the compiler refuses
//! exactly what the runner would refuse.
//!
//! A mailbox is `address` or `Display Name <address>` (the name may be a quoted string).
//! The address must be ASCII `local-part@domain` as RFC 5322 defines it (checked by the
//! `email_address` crate): exported messages are 7-bit, so there is no SMTPUTF8 address. The
//! display name may be any Unicode text without control characters; the mail writer encodes it.

use provflow_ir::Mailbox;

/// The longest display name of ASCII, in characters, counting a backslash before each `"` and
/// `\\`: the name is written as one quoted string, which then fits on one header line even
/// after `From: ` (a reader such as `mail-parser` drops the space where a quoted string is
/// folded).
pub const MAX_ASCII_NAME: usize = 70;

/// The longest display name with other characters, in bytes of UTF-8 (about 40 accented Latin
/// or 15 CJK characters): it becomes one RFC 2047 encoded word of at most 75 characters
/// (`=?utf-8?B?` + 60 base64 characters + `?=`). A longer name is split into several words,
/// and readers disagree on how to join those: RFC 2047 drops the space between them, while
/// Python's `email` package and `mail-parser` keep it, so the name would read differently.
pub const MAX_ENCODED_NAME: usize = 45;

/// The length of an ASCII name as a quoted string's content.
fn quoted_len(name: &str) -> usize {
    name.len() + name.matches(['"', '\\']).count()
}

/// Whether a display name stays one piece in a mail header (see [`MAX_ASCII_NAME`] and
/// [`MAX_ENCODED_NAME`]).
pub fn name_fits(name: &str) -> bool {
    if name.is_ascii() {
        quoted_len(name) <= MAX_ASCII_NAME
    } else {
        name.len() <= MAX_ENCODED_NAME
    }
}

/// `name` shortened at a character boundary, ending with `...` (ASCII) or `…`, so that it
/// [fits](name_fits).
pub fn shorten_name(name: &str) -> String {
    if name_fits(name) {
        return name.to_owned();
    }
    let (ellipsis, limit) = if name.is_ascii() { ("...", MAX_ASCII_NAME) } else { ("…", MAX_ENCODED_NAME) };
    let mut out = String::new();
    for c in name.chars() {
        let grown = format!("{out}{c}");
        let size = if name.is_ascii() { quoted_len(&grown) } else { grown.len() };
        if size + ellipsis.len() > limit {
            break;
        }
        out = grown;
    }
    let mut out = out.trim_end().to_owned();
    out.push_str(ellipsis);
    out
}

/// Why a text is not a mailbox. The messages never quote the text itself: it may hold control
/// characters that would garble a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxError {
    Empty,
    /// A control character (a line break, NUL, ESC ...) at a character position (1-based).
    Control {
        code: u32,
        position: usize,
    },
    /// `<` without a closing `>` at the end, or `>` without `<`.
    Brackets,
    /// The display name does not [fit](name_fits) one encoded word.
    NameTooLong,
    /// An unquoted display name has one of RFC 5322's specials (`( ) < > [ ] : ; @ \ , "`).
    NameNeedsQuotes,
    /// The display name contains an RFC 2047 encoded word (`=?charset?Q?...?=`): mail readers
    /// would show its decoded text instead of what was written.
    EncodedWord,
    /// The address has a character outside ASCII.
    NotAscii,
    /// The address is not `local-part@domain`; the reason comes from the address parser.
    Address(String),
}

impl std::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailboxError::Empty => write!(f, "the mail address is empty"),
            MailboxError::Control { code, position } => {
                write!(f, "the mail address contains the control character U+{code:04X} at character {position}")
            }
            MailboxError::Brackets => {
                write!(f, "the mail address has unbalanced angle brackets; write `Name <local@domain>` or `local@domain`")
            }
            MailboxError::NameTooLong => write!(
                f,
                "the display name is too long to stay one piece in a mail header: at most {MAX_ASCII_NAME} characters of ASCII (a quote or a backslash counts two), or {MAX_ENCODED_NAME} bytes of UTF-8 (about 40 accented or 15 CJK characters) when it has others"
            ),
            MailboxError::NameNeedsQuotes => write!(
                f,
                "the display name has one of `( ) < > [ ] : ; @ \\ , \"`; put it in double quotes: `\"Doe, John\" <j.doe@example.com>`"
            ),
            MailboxError::EncodedWord => write!(
                f,
                "the display name contains an encoded word (`=?...?=`); write the name as plain text, it is encoded when the message is written"
            ),
            MailboxError::NotAscii => write!(
                f,
                "the address part has a character outside ASCII; only the display name may use other characters"
            ),
            MailboxError::Address(reason) => write!(f, "the address is not `local-part@domain`: {reason}"),
        }
    }
}

impl std::error::Error for MailboxError {}

/// The first control character of `text` and its 1-based character position.
fn first_control(text: &str) -> Option<(u32, usize)> {
    text.chars().enumerate().find(|(_, c)| c.is_control()).map(|(i, c)| (u32::from(c), i + 1))
}

/// Whether `text` contains something a mail reader would decode as an RFC 2047 encoded word:
/// `=?charset?B|Q?text?=` with no white space inside.
pub fn has_encoded_word(text: &str) -> bool {
    text.split_whitespace().any(|token| {
        let mut rest = token;
        while let Some(start) = rest.find("=?") {
            let after = rest.get(start + 2..).unwrap_or("");
            let mut parts = after.splitn(3, '?');
            let charset = parts.next().unwrap_or("");
            let encoding = parts.next().unwrap_or("");
            let tail = parts.next().unwrap_or("");
            if !charset.is_empty() && matches!(encoding, "b" | "B" | "q" | "Q") && tail.contains("?=") {
                return true;
            }
            rest = after;
        }
        false
    })
}

/// `text` without surrounding white space; refused when it has a control character or is
/// empty.
fn trimmed(text: &str) -> Result<&str, MailboxError> {
    if let Some((code, position)) = first_control(text) {
        return Err(MailboxError::Control { code, position });
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(MailboxError::Empty);
    }
    Ok(text)
}

/// Parses `address` or `Name <address>` (the name may be a quoted string with `\"` escapes).
pub fn parse_mailbox(text: &str) -> Result<Mailbox, MailboxError> {
    let text = trimmed(text)?;
    let (name, address) = match text.strip_suffix('>') {
        Some(head) => {
            let (name, address) = head.rsplit_once('<').ok_or(MailboxError::Brackets)?;
            (name.trim(), address.trim())
        }
        None if text.contains('<') || text.contains('>') => return Err(MailboxError::Brackets),
        None => ("", text),
    };
    let name = unquote(name)?;
    if !name_fits(&name) {
        return Err(MailboxError::NameTooLong);
    }
    if has_encoded_word(&name) {
        return Err(MailboxError::EncodedWord);
    }
    let address = parse_address(address)?;
    Ok(Mailbox { name: (!name.is_empty()).then_some(name), address })
}

/// Checks a bare address (`local-part@domain`, ASCII, no display name, no angle brackets).
pub fn parse_address(text: &str) -> Result<String, MailboxError> {
    let text = trimmed(text)?;
    if !text.is_ascii() {
        return Err(MailboxError::NotAscii);
    }
    if text.contains(['<', '>']) {
        return Err(MailboxError::Brackets);
    }
    let options = email_address::Options::default().without_display_text();
    email_address::EmailAddress::parse_with_options(text, options)
        .map(|_| text.to_owned())
        .map_err(|e| MailboxError::Address(e.to_string()))
}

/// A display name as written: a quoted string loses its quotes and backslash escapes; other
/// text is taken as it is when it has none of RFC 5322's specials (the mail writer quotes or
/// encodes the name as needed).
fn unquote(name: &str) -> Result<String, MailboxError> {
    let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) else {
        if name.contains(['(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"']) {
            return Err(MailboxError::NameNeedsQuotes);
        }
        return Ok(name.to_owned());
    };
    Ok(crate::unescape_backslashes(inner).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (Option<String>, String) {
        let m = parse_mailbox(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        (m.name, m.address)
    }

    #[test]
    fn accepts_addresses_and_display_names() {
        assert_eq!(ok("iam@example.com"), (None, "iam@example.com".into()));
        assert_eq!(ok(" <iam@example.com> "), (None, "iam@example.com".into()));
        assert_eq!(ok("provflow <provflow@localhost>"), (Some("provflow".into()), "provflow@localhost".into()));
        assert_eq!(
            ok("Gestion des identités <iam@example.com>"),
            (Some("Gestion des identités".into()), "iam@example.com".into())
        );
        assert_eq!(
            ok(r#""Doe, John \"JD\"" <j.doe@example.com>"#),
            (Some(r#"Doe, John "JD""#.into()), "j.doe@example.com".into())
        );
        assert_eq!(ok("\"J Doe\"@example.com"), (None, "\"J Doe\"@example.com".into()));
    }

    #[test]
    fn refuses_what_could_inject_or_mislead() {
        type Expect = fn(&MailboxError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("", |e| *e == MailboxError::Empty),
            ("   ", |e| *e == MailboxError::Empty),
            ("IAM <iam@example.com>\r\nBcc: x@evil.example", |e| matches!(e, MailboxError::Control { code: 13, .. })),
            ("IAM\n <iam@example.com>", |e| matches!(e, MailboxError::Control { code: 10, position: 4 })),
            ("a\u{0}b@example.com", |e| matches!(e, MailboxError::Control { code: 0, .. })),
            ("\u{1b}[31mIAM <iam@example.com>", |e| matches!(e, MailboxError::Control { code: 0x1b, .. })),
            ("IAM <iam@example.com", |e| *e == MailboxError::Brackets),
            ("IAM iam@example.com>", |e| *e == MailboxError::Brackets),
            ("<a@b> <c@d>", |e| *e == MailboxError::NameNeedsQuotes),
            ("Doe, John <j@example.com>", |e| *e == MailboxError::NameNeedsQuotes),
            ("élodie@example.com", |e| *e == MailboxError::NotAscii),
            ("iam", |e| matches!(e, MailboxError::Address(_))),
            ("iam@", |e| matches!(e, MailboxError::Address(_))),
            ("@example.com", |e| matches!(e, MailboxError::Address(_))),
            ("a, b@example.com", |e| matches!(e, MailboxError::Address(_))),
            ("\"=?utf-8?Q?=0D=0ABcc:_x?=\" <iam@example.com>", |e| *e == MailboxError::EncodedWord),
            ("=?utf-8?Q?=0D=0A?= <iam@example.com>", |e| *e == MailboxError::EncodedWord),
        ];
        for (text, expected) in cases {
            match parse_mailbox(text) {
                Ok(m) => panic!("{text:?} was accepted as {m:?}"),
                Err(e) => assert!(expected(&e), "{text:?}: {e:?}"),
            }
        }
        for long in ["n".repeat(MAX_ASCII_NAME + 1), "é".repeat(MAX_ENCODED_NAME / 2 + 1)] {
            assert_eq!(parse_mailbox(&format!("{long} <iam@example.com>")), Err(MailboxError::NameTooLong));
        }
        assert!(parse_mailbox(&format!("{} <iam@example.com>", "n".repeat(MAX_ASCII_NAME))).is_ok());
        assert!(parse_mailbox(&format!("{} <iam@example.com>", "é".repeat(MAX_ENCODED_NAME / 2))).is_ok());
    }

    #[test]
    fn long_names_are_shortened_to_fit() {
        assert_eq!(shorten_name("Élodie Lefèvre"), "Élodie Lefèvre");
        let long = "Gestion des identités et des accès — Équipe IAM";
        let short = shorten_name(long);
        assert!(name_fits(&short) && short.ends_with('…') && long.starts_with(short.trim_end_matches('…')), "{short}");
        assert_eq!(shorten_name(&"字".repeat(40)), format!("{}…", "字".repeat(14)));
        assert_eq!(shorten_name(&"a".repeat(80)), format!("{}...", "a".repeat(67)));
        assert_eq!(shorten_name(&"\"".repeat(40)), format!("{}...", "\"".repeat(33)));
        assert!(name_fits(&"\"".repeat(35)) && !name_fits(&"\"".repeat(36)));
    }

    #[test]
    fn errors_never_quote_the_input() {
        let e = parse_mailbox("IAM\u{1b}]0;owned\u{7} <iam@example.com>").unwrap_err();
        assert_eq!(e.to_string(), "the mail address contains the control character U+001B at character 4");
    }

    #[test]
    fn finds_encoded_words() {
        for yes in ["=?utf-8?q?x?=", "a =?UTF-8?B?w6k=?= b", "x=?us-ascii?Q?a?=y"] {
            assert!(has_encoded_word(yes), "{yes}");
        }
        for no in ["Is 2+2=?", "=? x ?=", "=?utf-8?x?y?=", "a=?b", "?= =?"] {
            assert!(!has_encoded_word(no), "{no}");
        }
    }
}
