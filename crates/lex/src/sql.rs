//! The SQL lexer shared by query splitting (compiler) and install-script splitting (runner).
