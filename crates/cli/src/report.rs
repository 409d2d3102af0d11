//! Rendering diagnostics: human (miette, with the source snippet), JSON lines, GitHub annotations.

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity as MSeverity};
use provflow_compiler::diagnostic::{Diagnostic, Severity};
use std::fmt;
use std::io::IsTerminal;

use crate::args::Format;
use crate::out::{self, Stream};

/// A diagnostic adapted to miette, borrowing the source text.
struct Rendered<'a> {
    d: &'a Diagnostic,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&out::safe(&self.d.message))
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&out::safe(&self.d.message))
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.d.code))
    }

    fn severity(&self) -> Option<MSeverity> {
        Some(match self.d.severity {
            Severity::Error => MSeverity::Error,
            Severity::Warning => MSeverity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.d.help.as_ref().map(|h| Box::new(out::safe(h).into_owned()) as Box<dyn fmt::Display>)
    }

    fn url<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!("docs/diagnostics.md#{}", self.d.code.to_lowercase())))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let s = self.d.span;
        let len = s.end.saturating_sub(s.start).max(if s.start < self.len() { 1 } else { 0 });
        Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(
            Some(self.d.code.to_string()),
            (s.start, len),
        ))))
    }
}

impl Rendered<'_> {
    fn len(&self) -> usize {
        self.source.as_ref().map_or(0, |s| s.inner().len())
    }
}

/// Prints diagnostics in the chosen format. `sources` maps a file path to its text.
pub fn print_diagnostics(diagnostics: &[Diagnostic], format: Format, source_of: &dyn Fn(&str) -> Option<String>) {
    match format {
        Format::Json => {
            for d in diagnostics {
                out::json(&serde_json::to_value(d).unwrap_or_default());
            }
        }
        Format::Github => {
            for d in diagnostics {
                let kind = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let mut msg = format!("{}: {}", d.code, d.message);
                if let Some(h) = &d.help {
                    msg.push_str(&format!(" (help: {h})"));
                }
                out::line(
                    Stream::Out,
                    &format!(
                        "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}",
                        escape_property(&d.file),
                        d.line,
                        d.column,
                        d.end_line,
                        d.end_column,
                        d.code,
                        escape_data(&msg)
                    ),
                );
            }
        }
        _ => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
            let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
            for d in diagnostics {
                // A credential found in a definition must not be copied into CI logs by the snippet.
                let source = (d.code != "PF600")
                    .then(|| source_of(&d.file))
                    .flatten()
                    .map(|text| NamedSource::new(out::safe(&d.file), out::inert_source(&text).into_owned()));
                let r = Rendered { d, source };
                let mut buf = String::new();
                if handler.render_report(&mut buf, &r).is_ok() {
                    out::line(Stream::Err, &format!("{}:{}:{}", d.file, d.line, d.column));
                    // The parts taken from the definitions were made inert above; the rest is
                    // the renderer's own drawing (and colours on a terminal).
                    out::raw(Stream::Err, &buf);
                }
            }
        }
    }
}

/// GitHub workflow-command escaping of a message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// GitHub workflow-command escaping of a property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The one-line summary after a compile.
pub fn summary(errors: usize, warnings: usize, files: usize) -> String {
    let plural = |n: usize, w: &str| if n == 1 { format!("{n} {w}") } else { format!("{n} {w}s") };
    format!("{} and {} in {}", plural(errors, "error"), plural(warnings, "warning"), plural(files, "file"))
}
