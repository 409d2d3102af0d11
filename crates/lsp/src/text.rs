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
}
