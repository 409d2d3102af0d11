//! Positions: the compiler counts bytes, LSP counts UTF-16 code units per line.

use lsp_types::{Position, Range};

/// The line starts of one text, to turn byte offsets into LSP positions and back.
pub struct LineMap<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineMap<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineMap { text, starts }
    }

    /// The position of byte `offset` (clamped to the text, and back to a character boundary).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let character = self.text.get(start..offset).map_or(0, |s| s.encode_utf16().count());
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range { start: self.position(start), end: self.position(end) }
    }

    /// The byte offset of `position` (a position past the end of its line is the line's end;
    /// past the last line, the text's end).
    pub fn offset(&self, position: Position) -> usize {
        let Some(&start) = self.starts.get(position.line as usize) else { return self.text.len() };
        let end = self.starts.get(position.line as usize + 1).map_or(self.text.len(), |e| e.saturating_sub(1));
        // A line's length does not count its line break, `\r\n` included.
        let end = if self.text.get(start..end).is_some_and(|l| l.ends_with('\r')) { end - 1 } else { end };
        let line = self.text.get(start..end).unwrap_or("");
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            if units >= position.character {
                return start + i;
            }
            units += u32::try_from(c.len_utf16()).unwrap_or(2);
        }
        end
    }
}

/// Applies one change of an incremental `didChange` to `text`: `new` replaces `range`, or the
/// whole text when there is no range. A range past the end of a line or of the text is
/// clamped to it, and a range whose end comes before its start is read the right way round,
/// so no change can leave the text torn.
pub fn apply_change(text: &mut String, range: Option<Range>, new: &str) {
    let Some(range) = range else {
        new.clone_into(text);
        return;
    };
    let map = LineMap::new(text);
    let (a, b) = (map.offset(range.start), map.offset(range.end));
    text.replace_range(a.min(b)..a.max(b), new);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_utf16_positions_round_trip() {
        let text = "a: é\nb: 𝄞x\n";
        let map = LineMap::new(text);
        let x = text.find('x').unwrap_or(0);
        assert_eq!(map.position(x), Position { line: 1, character: 5 });
        assert_eq!(map.offset(Position { line: 1, character: 5 }), x);
        assert_eq!(map.offset(Position { line: 0, character: 99 }), 5);
        assert_eq!(map.offset(Position { line: 9, character: 0 }), text.len());
        assert_eq!(map.position(999), Position { line: 2, character: 0 });
    }

    fn at(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn changes_apply_by_utf16_range_and_are_clamped() {
        let mut text = String::from("a: é\nb: 𝄞x\n");
        // After the surrogate pair: `x` is at UTF-16 column 5.
        apply_change(&mut text, Some(Range { start: at(1, 5), end: at(1, 6) }), "yz");
        assert_eq!(text, "a: é\nb: 𝄞yz\n");
        // An insertion (empty range) after a two-byte character.
        apply_change(&mut text, Some(Range { start: at(0, 4), end: at(0, 4) }), "!");
        assert_eq!(text, "a: é!\nb: 𝄞yz\n");
        // A deletion across a line break.
        apply_change(&mut text, Some(Range { start: at(0, 5), end: at(1, 0) }), "");
        assert_eq!(text, "a: é!b: 𝄞yz\n");
        // Past the end of a line and of the text: clamped; reversed: read the right way round.
        apply_change(&mut text, Some(Range { start: at(0, 99), end: at(7, 3) }), "\n");
        assert_eq!(text, "a: é!b: 𝄞yz\n");
        apply_change(&mut text, Some(Range { start: at(0, 2), end: at(0, 0) }), "key");
        assert_eq!(text, "key é!b: 𝄞yz\n");
        // No range: the whole text.
        apply_change(&mut text, None, "c: 1\n");
        assert_eq!(text, "c: 1\n");
    }

    #[test]
    fn a_line_ending_in_crlf_ends_before_the_cr() {
        let mut text = String::from("a: 1\r\nb: 2\r\n");
        apply_change(&mut text, Some(Range { start: at(0, 99), end: at(0, 99) }), " # one");
        assert_eq!(text, "a: 1 # one\r\nb: 2\r\n");
    }
}
