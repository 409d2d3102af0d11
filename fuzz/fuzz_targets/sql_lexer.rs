//! The SQL lexer and statement splitter on arbitrary text, in every dialect: the tokens cover
//! the text exactly up to an error (which is where they stop), and the statements lie inside
//! it, in order, at the lines their offsets are on. Never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provflow_ir::Dialect;
use provflow_lex::sql::{split, Lexer, LineIndex};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let index = LineIndex::new(text);
    for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mariadb] {
        let mut end = 0;
        let mut error = None;
        for token in Lexer::new(text, dialect) {
            match token {
                Ok(t) => {
                    assert_eq!(t.offset, end, "{dialect:?}: gap before {t:?}");
                    assert!(!t.text.is_empty(), "{dialect:?}: empty token at {end}");
                    end = t.end();
                }
                Err(e) => {
                    assert_eq!(e.offset, end, "{dialect:?}: {e} not where the tokens stop");
                    error = Some(e);
                }
            }
        }
        if error.is_none() {
            assert_eq!(end, text.len(), "{dialect:?}: the tokens stop before the end");
        }
        match split(text, dialect) {
            Ok(statements) => {
                assert!(error.is_none(), "{dialect:?}: split past a lexer error");
                let mut after = 0;
                for s in statements {
                    assert!(s.leading >= after && s.offset >= s.leading, "{dialect:?}: {s:?} out of order");
                    assert_eq!(text.get(s.offset..s.offset + s.text.len()), Some(s.text), "{dialect:?}: {s:?}");
                    assert_eq!(index.line_col(s.offset).0, s.line, "{dialect:?}: {s:?}");
                    after = s.offset + s.text.len();
                }
            }
            Err(e) => assert_eq!(Some(e), error, "{dialect:?}: split and lexer disagree"),
        }
    }
});
