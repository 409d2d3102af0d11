//! The plain-text rendering of an HTML notification, sent beside the HTML in a
//! `multipart/alternative` message for readers that show no HTML.
//!
//! The input is a rendered template: markup written by the definitions' author, with every
//! value auto-escaped. So this is a small converter, not a browser: it drops tags, comments
//! and the content of `script`, `style`, `head` and `title`; turns block elements into line
//! breaks and blank lines, list items into `- ` or `1. ` lines and table cells into
//! ` | `-separated text; keeps a link's target after its text (`text <https://...>`); decodes
//! character references; and collapses white space as HTML does (except inside `pre`). It
//! never fails: text that is not well-formed HTML comes out as text.

/// The plain text of `html`, ending with one line break (empty when there is no text).
pub fn to_text(html: &str) -> String {
    let mut w = TextWriter::default();
    let mut rest = html;
    // Content of these elements is dropped up to their end tag.
    let mut skipping: Option<String> = None;
    // One entry per open list: `None` for `ul`, the next number for `ol`.
    let mut lists: Vec<Option<u32>> = Vec::new();
    // The target of the open `a` element, with the text length where it started.
    let mut link: Option<(String, usize)> = None;
    let mut pre = 0usize;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skipping.is_none() {
                w.text(&decode(rest), pre > 0);
            }
            break;
        };
        let (text, at_tag) = rest.split_at(lt);
        if skipping.is_none() {
            w.text(&decode(text), pre > 0);
        }
        if let Some(after) = at_tag.strip_prefix("<!--") {
            rest = after.find("-->").and_then(|end| after.get(end + 3..)).unwrap_or("");
            continue;
        }
        let Some(tag) = Tag::parse(at_tag) else {
            // A `<` that opens no tag is text.
            if skipping.is_none() {
                w.text("<", pre > 0);
            }
            rest = at_tag.get(1..).unwrap_or("");
            continue;
        };
        rest = at_tag.get(tag.len..).unwrap_or("");
        if let Some(name) = &skipping {
            if tag.closing && tag.name == *name {
                skipping = None;
            }
            continue;
        }
        match (tag.name.as_str(), tag.closing) {
            ("script" | "style" | "head" | "title" | "template", false) if !tag.self_closing => {
                skipping = Some(tag.name.clone());
            }
            ("br", _) => w.line_break(),
            ("p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "table" | "dl", _) => w.paragraph(),
            ("pre", closing) => {
                w.paragraph();
                pre = if closing { pre.saturating_sub(1) } else { pre + 1 };
            }
            ("ul", false) => {
                w.paragraph();
                lists.push(None);
            }
            ("ol", false) => {
                w.paragraph();
                let start = tag.attribute("start").and_then(|s| s.trim().parse().ok()).unwrap_or(1);
                lists.push(Some(start));
            }
            ("ul" | "ol", true) => {
                lists.pop();
                w.paragraph();
            }
            ("li", false) => {
                w.line_break();
                let depth = lists.len().saturating_sub(1);
                let marker = match lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n = n.saturating_add(1);
                        m
                    }
                    _ => "- ".to_owned(),
                };
                w.raw(&format!("{}{marker}", "  ".repeat(depth)));
            }
            (
                "li" | "tr" | "div" | "section" | "article" | "header" | "footer" | "nav" | "main" | "dt" | "dd"
                | "figure" | "figcaption" | "address",
                _,
            ) => w.line_break(),
            ("hr", _) => {
                w.paragraph();
                w.raw("----");
                w.paragraph();
            }
            ("td" | "th", false) => w.cell(),
            ("img", _) => {
                if let Some(alt) = tag.attribute("alt").filter(|a| !a.trim().is_empty()) {
                    w.text(&alt, false);
                }
            }
            ("a", false) => {
                link = tag.attribute("href").map(|h| (h.trim().to_owned(), w.len()));
            }
            ("a", true) => {
                if let Some((href, start)) = link.take() {
                    let shown = w.since(start);
                    let target = href.strip_prefix("mailto:").unwrap_or(&href);
                    let scheme = href.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
                    let hidden = matches!(scheme.as_deref(), Some("javascript" | "data" | "vbscript"));
                    if !href.is_empty() && !href.starts_with('#') && !hidden && shown.trim() != target {
                        w.text(&format!(" <{href}>"), false);
                    }
                }
            }
            _ => {}
        }
    }
    w.finish()
}

/// A tag: its lower-case name, whether it closes, and its raw attribute text.
struct Tag<'a> {
    name: String,
    closing: bool,
    self_closing: bool,
    attributes: &'a str,
    /// Bytes from `<` to `>` inclusive.
    len: usize,
}

impl<'a> Tag<'a> {
    /// The tag at the start of `s` (which starts with `<`), or `None` when `<` opens none.
    fn parse(s: &'a str) -> Option<Tag<'a>> {
        let body = s.strip_prefix('<')?;
        let (closing, body) = match body.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        let first = body.chars().next()?;
        if !(first.is_ascii_alphabetic() || (!closing && (first == '!' || first == '?'))) {
            return None;
        }
        // The end is the first `>` outside a quoted attribute value.
        let mut quote: Option<char> = None;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '>') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        // An unterminated tag swallows the rest of the text, as in a browser.
        let end = end.unwrap_or(body.len());
        let inner = body.get(..end).unwrap_or("");
        let name_len = inner.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(inner.len());
        let name = inner.get(..name_len).unwrap_or("").to_ascii_lowercase();
        let attributes = inner.get(name_len..).unwrap_or("");
        let self_closing = attributes.trim_end().ends_with('/');
        let len = (s.len() - body.len()) + end + usize::from(end < body.len());
        Some(Tag { name, closing, self_closing, attributes, len })
    }

    /// The decoded value of attribute `wanted`.
    fn attribute(&self, wanted: &str) -> Option<String> {
        let mut rest = self.attributes;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if rest.is_empty() {
                return None;
            }
            let name_len = rest.find(|c: char| c.is_whitespace() || c == '=' || c == '/').unwrap_or(rest.len());
            let name = rest.get(..name_len).unwrap_or("");
            rest = rest.get(name_len..).unwrap_or("").trim_start();
            let value = match rest.strip_prefix('=') {
                None => "",
                Some(v) => {
                    let v = v.trim_start();
                    let (value, after) = match v.chars().next() {
                        Some(q @ ('"' | '\'')) => {
                            let inner = v.get(1..).unwrap_or("");
                            let close = inner.find(q).unwrap_or(inner.len());
                            (inner.get(..close).unwrap_or(""), inner.get(close + 1..).unwrap_or(""))
                        }
                        _ => {
                            let end = v.find(char::is_whitespace).unwrap_or(v.len());
                            (v.get(..end).unwrap_or(""), v.get(end..).unwrap_or(""))
                        }
                    };
                    rest = after;
                    value
                }
            };
            if name.eq_ignore_ascii_case(wanted) {
                return Some(decode(value));
            }
            if name.is_empty() {
                // A stray character (`=` alone): step over it.
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
}

/// Text with character references decoded. Unknown named references stay as written; numeric
/// references to control characters, surrogates or beyond Unicode become U+FFFD.
fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let after = rest.get(amp + 1..).unwrap_or("");
        let semi = after.find(';').filter(|&i| i <= 32);
        let decoded = semi.and_then(|i| after.get(..i)).and_then(reference);
        match (decoded, semi) {
            (Some(c), Some(i)) => {
                out.push(c);
                rest = after.get(i + 1..).unwrap_or("");
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character of a reference's name (`amp`, `#233`, `#xE9`).
fn reference(name: &str) -> Option<char> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => number.parse::<u32>().ok(),
        }?;
        let c = char::from_u32(code).unwrap_or('\u{FFFD}');
        return Some(if c.is_control() && c != '\t' && c != '\n' { '\u{FFFD}' } else { c });
    }
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "euro" => '€',
        "bull" => '•',
        "middot" => '·',
        _ => return None,
    };
    Some(c)
}

/// Accumulates text with HTML white-space collapsing and pending line breaks.
#[derive(Default)]
struct TextWriter {
    out: String,
    /// Line breaks owed before the next text (1: a line break, 2: a blank line).
    breaks: usize,
    /// A collapsed space owed before the next text on the same line.
    space: bool,
    /// Whether the current table row already has a cell.
    cell: bool,
}

impl TextWriter {
    fn len(&self) -> usize {
        self.out.len()
    }

    fn since(&self, start: usize) -> &str {
        self.out.get(start..).unwrap_or("")
    }

    fn line_break(&mut self) {
        self.breaks = self.breaks.max(1);
        self.space = false;
        self.cell = false;
    }

    fn paragraph(&mut self) {
        self.breaks = 2;
        self.space = false;
        self.cell = false;
    }

    fn cell(&mut self) {
        if self.cell {
            self.raw(" | ");
        }
        self.cell = true;
    }

    /// Writes the owed line breaks (none at the very start).
    fn flush_breaks(&mut self) {
        if self.breaks > 0 && !self.out.is_empty() {
            while self.out.ends_with(' ') {
                self.out.pop();
            }
            let have = self.out.chars().rev().take_while(|&c| c == '\n').count();
            for _ in have..self.breaks {
                self.out.push('\n');
            }
            self.space = false;
        }
        self.breaks = 0;
    }

    /// Text written as it is (list markers, separators).
    fn raw(&mut self, text: &str) {
        self.flush_breaks();
        if self.space {
            self.out.push(' ');
            self.space = false;
        }
        self.out.push_str(text);
    }

    /// Character data: white space collapses unless `pre`.
    fn text(&mut self, text: &str, pre: bool) {
        if pre {
            if !text.is_empty() {
                self.raw(text);
            }
            return;
        }
        for (i, word) in text.split(|c: char| c.is_ascii_whitespace()).enumerate() {
            if i > 0 {
                self.space = true;
            }
            if word.is_empty() {
                continue;
            }
            let at_line_start = self.out.is_empty() || self.out.ends_with('\n') || self.breaks > 0;
            if at_line_start {
                self.space = false;
            }
            self.raw(word);
        }
    }

    fn finish(mut self) -> String {
        while self.out.ends_with(char::is_whitespace) {
            self.out.pop();
        }
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::to_text;

    #[test]
    fn paragraphs_breaks_and_white_space() {
        let html = "<p>Hello &lt;script&gt;alert(1)&lt;&#x2f;script&gt;,</p>\n<p>Your   Badge Access\n account was\nprovisioned.</p>\n<p>Line one<br>line two<br/>line three</p>";
        assert_eq!(
            to_text(html),
            "Hello <script>alert(1)</script>,\n\nYour Badge Access account was provisioned.\n\nLine one\nline two\nline three\n"
        );
    }

    #[test]
    fn links_keep_their_target() {
        let html = r##"<p>See <a href="https://example.com/a?b=1&amp;c=2">the portal</a>, <a href='mailto:iam@example.com'>iam@example.com</a>, <a href="https://x.example/">https://x.example/</a>, <a href="#top">top</a> and <a href="javascript:alert(1)">this</a>.</p>"##;
        assert_eq!(
            to_text(html),
            "See the portal <https://example.com/a?b=1&c=2>, iam@example.com, https://x.example/, top and this.\n"
        );
    }

    #[test]
    fn lists_tables_and_dropped_content() {
        let html = "<html><head><title>T</title><style>p { color: red }</style></head><body>\
            <h1>Title</h1><ul><li>one</li><li>two<ol start=\"3\"><li>three</li><li>four</li></ol></li></ul>\
            <table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>\
            <script>document.write('<p>x</p>')</script><!-- a <p>comment</p> --><img src=x alt=\"logo\"></body></html>";
        assert_eq!(to_text(html), "Title\n\n- one\n- two\n\n  3. three\n  4. four\n\nName | Value\na | 1\n\nlogo\n");
    }

    #[test]
    fn pre_keeps_its_lines() {
        assert_eq!(to_text("<p>a</p><pre>  x  y\n z</pre><p>b</p>"), "a\n\n  x  y\n z\n\nb\n");
    }

    #[test]
    fn references() {
        assert_eq!(
            to_text(
                "caf&eacute; &amp; cr&#232;me &#xE9;&#233; &#0;&#27;&#xD800;&#x110000; &unknown; & &amp &nbsp;&mdash;"
            ),
            "caf&eacute; & crème éé \u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD} &unknown; & &amp \u{a0}—\n"
        );
    }

    #[test]
    fn broken_markup_is_text_and_never_panics() {
        assert_eq!(to_text("a < b and c > d"), "a < b and c > d\n");
        assert_eq!(to_text("x <p"), "x\n");
        assert_eq!(to_text("<a href=\"unterminated>text"), "");
        assert_eq!(to_text("<!-- never closed"), "");
        assert_eq!(to_text(""), "");
        for s in ["<", "&", "&#", "&#x;", "</", "<a href=>", "<a href='x'>", "</a>", "<ol start=-1><li>x", "é<é>é"] {
            let _ = to_text(s);
        }
    }
}
