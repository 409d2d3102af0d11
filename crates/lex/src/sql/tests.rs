use super::*;
use provflow_ir::Dialect::{self, Mariadb, Postgres, Sqlite};
use TokenKind as K;

const ALL: [Dialect; 3] = [Sqlite, Postgres, Mariadb];

/// The tokens of `src` other than whitespace, as (kind, text).
fn tokens(src: &str, dialect: Dialect) -> Vec<(TokenKind, &str)> {
    match tokenize(src, dialect) {
        Ok(t) => t.into_iter().filter(|t| t.kind != K::Whitespace).map(|t| (t.kind, t.text)).collect(),
        Err(e) => panic!("{dialect:?}: {src:?}: {e} at {}", e.offset),
    }
}

#[test]
fn token_kinds_per_dialect() {
    type Case = (&'static [Dialect], &'static str, &'static [(TokenKind, &'static str)]);
    let cases: &[Case] = &[
        // Shared by every dialect.
        (
            &ALL,
            "select a_1, t.b",
            &[(K::Word, "select"), (K::Word, "a_1"), (K::Punct, ","), (K::Word, "t"), (K::Punct, "."), (K::Word, "b")],
        ),
        (&ALL, "'it''s;' x", &[(K::String, "'it''s;'"), (K::Word, "x")]),
        (&ALL, "''", &[(K::String, "''")]),
        (&ALL, "X'00ff' x'0A'", &[(K::String, "X'00ff'"), (K::String, "x'0A'")]),
        (&ALL, "-- c;\n;", &[(K::LineComment, "-- c;"), (K::Semicolon, ";")]),
        (&ALL, "/* a; */;", &[(K::BlockComment, "/* a; */"), (K::Semicolon, ";")]),
        (
            &ALL,
            "1 2.5 .5 1e10 1.5E-3 0x1F 7.",
            &[
                (K::Number, "1"),
                (K::Number, "2.5"),
                (K::Number, ".5"),
                (K::Number, "1e10"),
                (K::Number, "1.5E-3"),
                (K::Number, "0x1F"),
                (K::Number, "7."),
            ],
        ),
        (
            &ALL,
            "a<=b||c",
            &[
                (K::Word, "a"),
                (K::Punct, "<"),
                (K::Punct, "="),
                (K::Word, "b"),
                (K::Punct, "|"),
                (K::Punct, "|"),
                (K::Word, "c"),
            ],
        ),
        (&ALL, "é_ü x$y", &[(K::Word, "é_ü"), (K::Word, "x$y")]),
        (
            &ALL,
            "{name} {{x}}",
            &[
                (K::Punct, "{"),
                (K::Word, "name"),
                (K::Punct, "}"),
                (K::Punct, "{"),
                (K::Punct, "{"),
                (K::Word, "x"),
                (K::Punct, "}"),
                (K::Punct, "}"),
            ],
        ),
        (&ALL, "a\u{7}b", &[(K::Word, "a"), (K::Punct, "\u{7}"), (K::Word, "b")]),
        // SQLite.
        (
            &[Sqlite],
            "\"a\"\"b\" `c``d` [e f]",
            &[(K::QuotedIdent, "\"a\"\"b\""), (K::QuotedIdent, "`c``d`"), (K::QuotedIdent, "[e f]")],
        ),
        (
            &[Sqlite],
            "? ?12 :usr @v $x :: a:b",
            &[
                (K::Parameter, "?"),
                (K::Parameter, "?12"),
                (K::Parameter, ":usr"),
                (K::Parameter, "@v"),
                (K::Parameter, "$x"),
                (K::Punct, ":"),
                (K::Punct, ":"),
                (K::Word, "a"),
                (K::Parameter, ":b"),
            ],
        ),
        (&[Sqlite], "'a\\' b", &[(K::String, "'a\\'"), (K::Word, "b")]),
        (&[Sqlite], "/* /* */ x", &[(K::BlockComment, "/* /* */"), (K::Word, "x")]),
        (&[Sqlite], "# x", &[(K::Punct, "#"), (K::Word, "x")]),
        // PostgreSQL.
        (
            &[Postgres],
            "\"a\"\"b\" U&\"d\" `c`",
            &[
                (K::QuotedIdent, "\"a\"\"b\""),
                (K::QuotedIdent, "U&\"d\""),
                (K::Punct, "`"),
                (K::Word, "c"),
                (K::Punct, "`"),
            ],
        ),
        (
            &[Postgres],
            "E'it\\'s' e'\\\\' 'a\\' U&'d'",
            &[(K::String, "E'it\\'s'"), (K::String, "e'\\\\'"), (K::String, "'a\\'"), (K::String, "U&'d'")],
        ),
        (
            &[Postgres],
            "$$a;'$$ $body$ $$ ; $body$ $tag_1$x$tag_1$",
            &[
                (K::DollarString, "$$a;'$$"),
                (K::DollarString, "$body$ $$ ; $body$"),
                (K::DollarString, "$tag_1$x$tag_1$"),
            ],
        ),
        (
            &[Postgres],
            "$1, $23 a$b$c $",
            &[(K::Parameter, "$1"), (K::Punct, ","), (K::Parameter, "$23"), (K::Word, "a$b$c"), (K::Punct, "$")],
        ),
        (
            &[Postgres],
            "/* a /* b */ c; */ x::text ?",
            &[
                (K::BlockComment, "/* a /* b */ c; */"),
                (K::Word, "x"),
                (K::Punct, ":"),
                (K::Punct, ":"),
                (K::Word, "text"),
                (K::Punct, "?"),
            ],
        ),
        (&[Postgres], "[1] #", &[(K::Punct, "["), (K::Number, "1"), (K::Punct, "]"), (K::Punct, "#")]),
        (&[Postgres], "xE'a' E 'b'", &[(K::Word, "xE"), (K::String, "'a'"), (K::Word, "E"), (K::String, "'b'")]),
        // MariaDB.
        (
            &[Mariadb],
            "'a\\'b' \"c\\\"d\" \"e\"\"f\" `g``h`",
            &[(K::String, "'a\\'b'"), (K::String, "\"c\\\"d\""), (K::String, "\"e\"\"f\""), (K::QuotedIdent, "`g``h`")],
        ),
        (
            &[Mariadb],
            "# c;\n--x -- y;\n--\tz",
            &[
                (K::LineComment, "# c;"),
                (K::Punct, "-"),
                (K::Punct, "-"),
                (K::Word, "x"),
                (K::LineComment, "-- y;"),
                (K::LineComment, "--\tz"),
            ],
        ),
        (
            &[Mariadb],
            "/*!50003 SET x = 1; */ /*M!100100 y */ /* z */",
            &[
                (K::ExecutableComment, "/*!50003 SET x = 1; */"),
                (K::ExecutableComment, "/*M!100100 y */"),
                (K::BlockComment, "/* z */"),
            ],
        ),
        (
            &[Mariadb],
            "? $a 1st_col 1e5 @x",
            &[
                (K::Parameter, "?"),
                (K::Word, "$a"),
                (K::Word, "1st_col"),
                (K::Number, "1e5"),
                (K::Punct, "@"),
                (K::Word, "x"),
            ],
        ),
        (
            &[Mariadb],
            "/* /* */ x [y]",
            &[(K::BlockComment, "/* /* */"), (K::Word, "x"), (K::Punct, "["), (K::Word, "y"), (K::Punct, "]")],
        ),
        (&[Mariadb], "N'a\\'' _utf8mb4'b'", &[(K::String, "N'a\\''"), (K::Word, "_utf8mb4"), (K::String, "'b'")]),
    ];
    for (dialects, src, want) in cases {
        for &d in *dialects {
            assert_eq!(tokens(src, d), *want, "{d:?}: {src:?}");
        }
    }
}

#[test]
fn mariadb_delimiter_directives() {
    let src = "select 1;\nDELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END//\n  delimiter $$\nselect `a$$`, 'b$$' END$$\nDELIMITER ;\nselect 2;";
    let mut lexer = Lexer::new(src, Mariadb);
    let mut got = Vec::new();
    for t in lexer.by_ref() {
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        if matches!(t.kind, K::Delimiter | K::DelimiterDirective | K::Semicolon) {
            got.push((t.kind, t.text));
        }
    }
    assert_eq!(
        got,
        vec![
            (K::Semicolon, ";"),
            (K::DelimiterDirective, "DELIMITER //"),
            (K::Semicolon, ";"),
            (K::Delimiter, "//"),
            (K::DelimiterDirective, "delimiter $$"),
            (K::Delimiter, "$$"),
            (K::DelimiterDirective, "DELIMITER ;"),
            (K::Semicolon, ";"),
        ]
    );
    assert_eq!(lexer.delimiter(), ";");
    // Not a directive: mid-statement, not at a line start, or another word.
    for src in ["select\ndelimiter //", "select 1; delimiter //", "delimiters //", "/* c */ delimiter //"] {
        assert!(tokens(src, Mariadb).iter().all(|(k, _)| *k != K::DelimiterDirective), "{src}");
    }
    // Other dialects have no client directives.
    assert_eq!(tokens("delimiter //", Postgres).first(), Some(&(K::Word, "delimiter")));
    // A directive without an argument changes nothing.
    let mut lexer = Lexer::new("DELIMITER \nselect 1;", Mariadb);
    assert!(lexer.by_ref().all(|t| t.is_ok()));
    assert_eq!(lexer.delimiter(), ";");
}

#[test]
fn unclosed_forms_are_errors_at_their_start() {
    type Case = (&'static [Dialect], &'static str, Unclosed, usize);
    let cases: &[Case] = &[
        (&ALL, "select 'abc", Unclosed::String, 7),
        (&ALL, "select 'it''", Unclosed::String, 7),
        (&ALL, "x /* a", Unclosed::BlockComment, 2),
        (&ALL, "x /*/", Unclosed::BlockComment, 2),
        (&ALL, "x X'00", Unclosed::String, 2),
        (&[Sqlite, Postgres], "select \"a", Unclosed::QuotedIdent, 7),
        (&[Sqlite, Mariadb], "select `a``", Unclosed::QuotedIdent, 7),
        (&[Sqlite], "select [a", Unclosed::QuotedIdent, 7),
        (&[Postgres], "do $$ begin", Unclosed::DollarQuote, 3),
        (&[Postgres], "do $a$ x $b$", Unclosed::DollarQuote, 3),
        (&[Postgres], "E'a\\'", Unclosed::String, 0),
        (&[Postgres], "U&\"a", Unclosed::QuotedIdent, 0),
        (&[Postgres], "/* a /* b */", Unclosed::BlockComment, 0),
        (&[Mariadb], "select 'a\\'", Unclosed::String, 7),
        (&[Mariadb], "select \"a", Unclosed::String, 7),
        (&[Mariadb], "select 'a\\", Unclosed::String, 7),
        (&[Mariadb], "/*! x", Unclosed::BlockComment, 0),
    ];
    for (dialects, src, unclosed, offset) in cases {
        for &d in *dialects {
            let mut lexer = Lexer::new(src, d);
            let results: Vec<_> = lexer.by_ref().collect();
            let want = LexError { unclosed: *unclosed, offset: *offset };
            assert_eq!(results.last(), Some(&Err(want)), "{d:?}: {src:?}");
            assert!(lexer.next().is_none(), "the lexer stops after an error");
            // Everything before the error is tokens that cover it exactly.
            let covered: String = results.iter().filter_map(|r| r.as_ref().ok()).map(|t| t.text).collect();
            assert_eq!(covered, src.get(..*offset).unwrap_or_default(), "{d:?}: {src:?}");
        }
    }
    assert_eq!(
        LexError { unclosed: Unclosed::DollarQuote, offset: 0 }.to_string(),
        "unterminated dollar-quoted string"
    );
}

#[test]
fn line_index_gives_lines_and_character_columns() {
    let src = "ab\né\r\nxyz\n";
    let index = LineIndex::new(src);
    let cases =
        [(0, (1, 1)), (1, (1, 2)), (2, (1, 3)), (3, (2, 1)), (5, (2, 2)), (7, (3, 1)), (9, (3, 3)), (11, (4, 1))];
    for (offset, want) in cases {
        assert_eq!(index.line_col(offset), want, "{offset}");
    }
    // Inside a character and past the end: the boundary before.
    assert_eq!(index.line_col(4), (2, 1));
    assert_eq!(index.line_col(99), (4, 1));
    assert_eq!(LineIndex::new("").line_col(0), (1, 1));
}

/// (line, text) of each statement.
fn statements(script: &str, dialect: Dialect) -> Vec<(u32, &str)> {
    match split(script, dialect) {
        Ok(s) => s.into_iter().map(|s| (s.line, s.text)).collect(),
        Err(e) => panic!("{dialect:?}: {script:?}: {e} at {}", e.offset),
    }
}

const TRIGGER: &str =
    "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET x = CASE WHEN new.v > 0 THEN 1 ELSE 0 END; END";

#[test]
fn sqlite_trigger_bodies_stay_whole() {
    let script = format!("{TRIGGER};\nINSERT INTO a VALUES (1);");
    assert_eq!(statements(&script, Sqlite), vec![(1, TRIGGER), (2, "INSERT INTO a VALUES (1)")]);

    type Case = (&'static str, &'static [(u32, &'static str)]);
    let cases: &[Case] = &[
        // Nested CASE, CASE in the WHEN clause, several statements in the body.
        (
            "CREATE TEMP TRIGGER IF NOT EXISTS t BEFORE UPDATE ON a\nWHEN CASE new.v WHEN 1 THEN 1 END\nBEGIN\n  SELECT CASE WHEN new.v IS NULL THEN RAISE(ABORT, 'null;') ELSE CASE new.v WHEN 2 THEN 'x' END END;\n  INSERT INTO log VALUES ('end;');\nEND;\nselect 1;",
            &[
                (1, "CREATE TEMP TRIGGER IF NOT EXISTS t BEFORE UPDATE ON a\nWHEN CASE new.v WHEN 1 THEN 1 END\nBEGIN\n  SELECT CASE WHEN new.v IS NULL THEN RAISE(ABORT, 'null;') ELSE CASE new.v WHEN 2 THEN 'x' END END;\n  INSERT INTO log VALUES ('end;');\nEND"),
                (7, "select 1"),
            ],
        ),
        // A trigger and the old splitter's test, with lines.
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n INSERT INTO b VALUES (1);\n INSERT INTO b VALUES (2);\nEND;\nselect 1;",
            &[(1, "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n INSERT INTO b VALUES (1);\n INSERT INTO b VALUES (2);\nEND"), (5, "select 1")],
        ),
        // BEGIN as a transaction; CASE and END outside a trigger.
        (
            "BEGIN;\nBEGIN TRANSACTION;\nBEGIN IMMEDIATE;\nselect case when 1 then 2 end;\nEND;\nCOMMIT;",
            &[(1, "BEGIN"), (2, "BEGIN TRANSACTION"), (3, "BEGIN IMMEDIATE"), (4, "select case when 1 then 2 end"), (5, "END"), (6, "COMMIT")],
        ),
        // A stray CASE does not swallow the rest of the script.
        ("select case;\nselect 2;", &[(1, "select case"), (2, "select 2")]),
        // Names that only look like keywords.
        (
            "CREATE TABLE trigger_log(\"begin\" TEXT, [case] TEXT);\nCREATE TRIGGER tr AFTER DELETE ON a BEGIN DELETE FROM trigger_log WHERE \"begin\" = old.x; END;\nselect 1;",
            &[
                (1, "CREATE TABLE trigger_log(\"begin\" TEXT, [case] TEXT)"),
                (2, "CREATE TRIGGER tr AFTER DELETE ON a BEGIN DELETE FROM trigger_log WHERE \"begin\" = old.x; END"),
                (3, "select 1"),
            ],
        ),
    ];
    for (script, want) in cases {
        assert_eq!(statements(script, Sqlite), *want, "{script}");
    }
}

#[test]
fn splits_plain_statements_with_lines() {
    let script =
        "-- header\nCREATE TABLE a(x);\n\n  INSERT INTO a VALUES ('x;y');INSERT INTO a VALUES (\"q;\");\nselect 1";
    assert_eq!(
        statements(script, Sqlite),
        vec![
            (2, "CREATE TABLE a(x)"),
            (4, "INSERT INTO a VALUES ('x;y')"),
            (4, "INSERT INTO a VALUES (\"q;\")"),
            (5, "select 1"),
        ]
    );
    for d in ALL {
        assert_eq!(statements(" ; ;\n-- only a comment;\n/* x; */", d), vec![], "{d:?}");
        assert_eq!(statements("", d), vec![], "{d:?}");
        // Comments inside and at the end of a statement are kept; leading ones are not.
        assert_eq!(
            statements("/* a */ select /* ; */ 1 -- b;\n; x", d),
            vec![(1, "select /* ; */ 1 -- b;"), (2, "x")],
            "{d:?}"
        );
    }
    let offsets = split("a;\n  b; ; -- c;\n d", Sqlite).unwrap_or_default();
    assert_eq!(offsets.iter().map(|s| (s.leading, s.offset)).collect::<Vec<_>>(), vec![(0, 0), (2, 5), (9, 17)]);
    assert!(matches!(split("a; 'b", Sqlite), Err(LexError { unclosed: Unclosed::String, offset: 3 })));
}

#[test]
fn postgres_dollar_quotes_parameters_and_bodies() {
    let script = "DO $$\nBEGIN\n  PERFORM 1; -- ;\nEND\n$$;\nCREATE FUNCTION f() RETURNS text AS $body$ select 'a;$$' $body$ LANGUAGE sql;\n\
                  /* outer /* nested; */ still; */ select $1, a$b$c, E'it\\'s;', 'x''y;';\nselect '$$;'";
    assert_eq!(
        statements(script, Postgres),
        vec![
            (1, "DO $$\nBEGIN\n  PERFORM 1; -- ;\nEND\n$$"),
            (6, "CREATE FUNCTION f() RETURNS text AS $body$ select 'a;$$' $body$ LANGUAGE sql"),
            (7, "select $1, a$b$c, E'it\\'s;', 'x''y;'"),
            (8, "select '$$;'"),
        ]
    );
    type Case = (&'static str, &'static [(u32, &'static str)]);
    let cases: &[Case] = &[
        // SQL-standard bodies (BEGIN ATOMIC … END) with CASE inside.
        (
            "CREATE OR REPLACE FUNCTION g(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nselect g(1);",
            &[
                (1, "CREATE OR REPLACE FUNCTION g(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND"),
                (6, "select g(1)"),
            ],
        ),
        // BEGIN is a transaction; parentheses hold `;` like psql.
        (
            "BEGIN;\nBEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));\nCOMMIT;",
            &[
                (1, "BEGIN"),
                (2, "BEGIN ISOLATION LEVEL SERIALIZABLE"),
                (3, "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))"),
                (4, "COMMIT"),
            ],
        ),
        // Dollar-quoted bodies with tags, nested quotes, and $n parameters inside and out.
        (
            "CREATE PROCEDURE p(a text) LANGUAGE plpgsql AS $proc$\nBEGIN\n  EXECUTE format($f$SELECT %L; $f$, a) USING $1;\n  IF a = 'x' THEN RETURN; END IF;\nEND\n$proc$;\nPREPARE q AS SELECT $1::int;",
            &[
                (1, "CREATE PROCEDURE p(a text) LANGUAGE plpgsql AS $proc$\nBEGIN\n  EXECUTE format($f$SELECT %L; $f$, a) USING $1;\n  IF a = 'x' THEN RETURN; END IF;\nEND\n$proc$"),
                (7, "PREPARE q AS SELECT $1::int"),
            ],
        ),
    ];
    for (script, want) in cases {
        assert_eq!(statements(script, Postgres), *want, "{script}");
    }
}

const MARIADB_PROC: &str = "CREATE OR REPLACE DEFINER = `root`@`localhost` PROCEDURE p(IN n INT)
    MODIFIES SQL DATA
BEGIN
    DECLARE i INT DEFAULT 0;
    DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN SET i = -1; END;
    IF n > 0 THEN
        SET i = IF(n > 10, 10, n);
    ELSEIF n < 0 THEN
        SET i = 0;
    ELSE
        IF n IS NULL THEN SET i = NULL; END IF;
    END IF;
    lbl: LOOP
        SET i = i + 1;
        IF i > 3 THEN LEAVE lbl; END IF;
    END LOOP lbl;
    WHILE i < 5 DO SET i = i + 1; END WHILE;
    REPEAT SET i = i - 1; UNTIL i < 0 END REPEAT;
    CASE i WHEN 1 THEN SELECT 'one;'; ELSE SELECT CASE WHEN i > 0 THEN 'pos' ELSE 'neg' END; END CASE;
    FOR r IN (SELECT 1 AS x) DO SELECT r.x; END FOR;
    SELECT * FROM t WHERE id IN (1) FOR UPDATE;
END";

#[test]
fn mariadb_compound_statements_with_and_without_delimiter() {
    let without = format!("select 1;\n{MARIADB_PROC};\nselect 2;");
    assert_eq!(statements(&without, Mariadb), vec![(1, "select 1"), (2, MARIADB_PROC), (24, "select 2")]);
    let with = format!("select 1;\nDELIMITER //\n{MARIADB_PROC} //\nDELIMITER ;\nselect 2;");
    assert_eq!(statements(&with, Mariadb), vec![(1, "select 1"), (3, MARIADB_PROC), (26, "select 2")]);
    let with_dollars = format!("DELIMITER $$\n{MARIADB_PROC}$$\nselect 2$$");
    assert_eq!(statements(&with_dollars, Mariadb), vec![(2, MARIADB_PROC), (24, "select 2")]);

    type Case = (&'static str, &'static [(u32, &'static str)]);
    let cases: &[Case] = &[
        // The old splitter's test: backslashes, `#` comments, `--` needing a space.
        (
            "SET sql_mode = 'a\\';b';\n# comment;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT `a//b`;\nEND //\n\ndelimiter ;\nCREATE ROLE r; select 1--1;\nselect 2 -- done;\n;",
            &[
                (1, "SET sql_mode = 'a\\';b'"),
                (4, "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT `a//b`;\nEND"),
                (10, "CREATE ROLE r"),
                (10, "select 1--1"),
                (11, "select 2 -- done;"),
            ],
        ),
        // BEGIN is a transaction, BEGIN NOT ATOMIC a block; compound statements stand alone.
        (
            "BEGIN;\nBEGIN WORK;\nBEGIN NOT ATOMIC SELECT 1; SELECT 2; END;\nIF @a THEN SELECT 1; END IF;\nCOMMIT;",
            &[
                (1, "BEGIN"),
                (2, "BEGIN WORK"),
                (3, "BEGIN NOT ATOMIC SELECT 1; SELECT 2; END"),
                (4, "IF @a THEN SELECT 1; END IF"),
                (5, "COMMIT"),
            ],
        ),
        // Single-statement bodies; a function body with IF().
        (
            "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW IF NEW.x < 0 THEN SET NEW.x = 0; END IF;\nCREATE FUNCTION f(a INT) RETURNS INT DETERMINISTIC RETURN IF(a > 0, 1, CASE WHEN a < 0 THEN -1 END);\nCREATE PROCEDURE q() WHILE @i < 3 DO SET @i = @i + 1; END WHILE;\nselect 1;",
            &[
                (1, "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW IF NEW.x < 0 THEN SET NEW.x = 0; END IF"),
                (2, "CREATE FUNCTION f(a INT) RETURNS INT DETERMINISTIC RETURN IF(a > 0, 1, CASE WHEN a < 0 THEN -1 END)"),
                (3, "CREATE PROCEDURE q() WHILE @i < 3 DO SET @i = @i + 1; END WHILE"),
                (4, "select 1"),
            ],
        ),
        // An IF() function where a statement could start is closed by the body's END.
        (
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN SELECT CASE WHEN 1 THEN IF(1, 2, 3) END; DO IF(1, 2, 3); END;\nselect 1;",
            &[(1, "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN SELECT CASE WHEN 1 THEN IF(1, 2, 3) END; DO IF(1, 2, 3); END"), (2, "select 1")],
        ),
        // IF EXISTS / IF NOT EXISTS and REPEAT() are not blocks.
        (
            "CREATE PROCEDURE p() BEGIN DROP TABLE IF EXISTS x; CREATE TABLE IF NOT EXISTS y (a INT); SELECT REPEAT('a', 3); END;\nselect 1;",
            &[(1, "CREATE PROCEDURE p() BEGIN DROP TABLE IF EXISTS x; CREATE TABLE IF NOT EXISTS y (a INT); SELECT REPEAT('a', 3); END"), (2, "select 1")],
        ),
        // An executable comment is a statement; its `;` is inside it.
        ("/*!40101 SET a = 1; */;\nselect 1;", &[(1, "/*!40101 SET a = 1; */"), (2, "select 1")]),
    ];
    for (script, want) in cases {
        assert_eq!(statements(script, Mariadb), *want, "{script}");
    }
}

#[test]
fn the_explicit_delimiter_wins_over_an_unbalanced_body() {
    // A missing END: the delimiter still ends the statement.
    let script = "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; //\nselect 2 //";
    assert_eq!(statements(script, Mariadb), vec![(2, "CREATE PROCEDURE p() BEGIN SELECT 1;"), (3, "select 2")]);
    // Without one, the rest of the script is the statement (the server then says why).
    assert_eq!(
        statements("CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;\nselect 2;", Sqlite),
        vec![(1, "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;\nselect 2;")]
    );
}

/// A deterministic generator of SQL-ish text: fragments that open and close every lexical
/// form, glued at random.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }

    fn text(&mut self) -> String {
        const FRAGMENTS: &[&str] = &[
            " ",
            "\n",
            "\t",
            "\r\n",
            ";",
            "'",
            "''",
            "\"",
            "`",
            "[",
            "]",
            "$",
            "$$",
            "$a$",
            "$1",
            "--",
            "-- ",
            "#",
            "/*",
            "*/",
            "/*!",
            "\\",
            "E'",
            "U&'",
            "x'",
            "N'",
            "?",
            ":a",
            "@b",
            "::",
            "{",
            "}",
            "{x}",
            "(",
            ")",
            ",",
            ".",
            "1",
            "2.5e",
            "0x",
            "é",
            "日本",
            "\u{0}",
            "\u{7}",
            "BEGIN",
            "END",
            "CASE",
            "IF",
            "LOOP",
            "END IF",
            "CREATE",
            "TRIGGER",
            "PROCEDURE",
            "FUNCTION",
            "NOT ATOMIC",
            "DELIMITER //\n",
            "DELIMITER $$\n",
            "DELIMITER ;\n",
            "//",
            "WHILE",
            "DO",
            "THEN",
            "FOR",
            "select",
            "a",
            "_b",
            "xyz$",
        ];
        let n = self.next() % 24;
        (0..n).map(|_| self.pick(FRAGMENTS)).collect()
    }
}

#[test]
fn generated_inputs_never_panic_and_tokens_cover_the_input() {
    let mut gen = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        let src = gen.text();
        for d in ALL {
            let mut end = 0;
            let mut error = None;
            for t in Lexer::new(&src, d) {
                match t {
                    Ok(t) => {
                        assert_eq!(t.offset, end, "{d:?}: {src:?}: gap before {t:?}");
                        assert!(!t.text.is_empty(), "{d:?}: {src:?}: empty token");
                        assert_eq!(src.get(t.offset..t.end()), Some(t.text), "{d:?}: {src:?}");
                        end = t.end();
                    }
                    Err(e) => error = Some(e),
                }
            }
            match error {
                Some(e) => assert_eq!(e.offset, end, "{d:?}: {src:?}: the error is where the tokens stop"),
                None => assert_eq!(end, src.len(), "{d:?}: {src:?}: tokens cover the input"),
            }
            let Ok(statements) = split(&src, d) else {
                assert!(error.is_some(), "{d:?}: {src:?}: split fails only where the lexer does");
                continue;
            };
            let index = LineIndex::new(&src);
            let mut after = 0;
            for s in statements {
                assert!(s.offset >= after, "{d:?}: {src:?}: statements in order");
                assert_eq!(src.get(s.offset..s.offset + s.text.len()), Some(s.text), "{d:?}: {src:?}");
                assert!(!s.text.is_empty() && s.text.trim_end() == s.text, "{d:?}: {src:?}: {s:?}");
                assert_eq!(index.line_col(s.offset).0, s.line, "{d:?}: {src:?}: {s:?}");
                assert!(s.leading <= s.offset && s.leading >= after, "{d:?}: {src:?}: {s:?}");
                after = s.offset + s.text.len();
            }
        }
    }
}

#[test]
fn long_inputs_lex_in_linear_time() {
    // Deep nesting and long runs: a quadratic scan would take minutes here.
    let n = 200_000;
    let nested = "/*".repeat(n) + &"*/".repeat(n);
    assert_eq!(tokenize(&nested, Postgres).map(|t| t.len()), Ok(1));
    let blocks = "CREATE TRIGGER t AFTER INSERT ON a ".to_string() + &"BEGIN CASE ".repeat(n) + &"END ".repeat(2 * n);
    assert_eq!(split(&(blocks.clone() + "; x"), Sqlite).map(|s| s.len()), Ok(2));
    assert!(split(&"''".repeat(n), Mariadb).is_ok());
}
