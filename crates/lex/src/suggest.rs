//! "Did you mean": the closest known name to a misspelled one. The one helper behind every
//! suggestion of the compiler, the runner and the command line.

/// Inputs longer than this get no fuzzy suggestion (only one differing in case): a typo is
/// short, and the similarity costs the product of the lengths.
const MAX_FUZZY_CHARS: usize = 100;

/// How similar (Jaro-Winkler, case-insensitive, 0 to 1) a candidate must be to be suggested.
const THRESHOLD: f64 = 0.8;

/// The candidate `given` most likely meant, if one is close enough to be a likely typo:
/// the same name in another case first, else the most similar one (Jaro-Winkler on lower
/// case, at least 0.8; the first wins a tie). A candidate equal to `given` is not a typo and is
/// never suggested.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    let fuzzy = given.chars().count() <= MAX_FUZZY_CHARS;
    let mut best: Option<(&'a str, f64)> = None;
    for c in candidates {
        if c == given {
            continue;
        }
        let c_lower = c.to_lowercase();
        let score = if c_lower == given_lower {
            // Above any similarity: same letters, another case.
            2.0
        } else if fuzzy && c.chars().count() <= MAX_FUZZY_CHARS {
            strsim::jaro_winkler(&given_lower, &c_lower)
        } else {
            continue;
        };
        if score >= THRESHOLD && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        let names = ["Create User", "Delete User", "Enable User"];
        assert_eq!(did_you_mean("Create Usr", names), Some("Create User"));
        assert_eq!(did_you_mean("create user", names), Some("Create User"));
        assert_eq!(did_you_mean("Frobnicate", names), None);
        assert_eq!(did_you_mean("Create User", ["Create User"]), None, "an exact name is no typo");
        assert_eq!(did_you_mean("depend_on", ["depends_on", "description"]), Some("depends_on"));
        assert_eq!(did_you_mean("anything", []), None);
    }

    /// Suggestions the callers relied on before they shared this helper.
    #[test]
    fn callers_suggestions() {
        // Runner: logins, processes, fields, targets, procedures.
        assert_eq!(did_you_mean("ALICIA", ["ALICE", "BOB"]), Some("ALICE"));
        assert_eq!(did_you_mean("DB Acount", ["DB Account", "Mail Account"]), Some("DB Account"));
        assert_eq!(did_you_mean("cost_centre", ["cost_center", "level"]), Some("cost_center"));
        assert_eq!(did_you_mean("insert_pakage", ["delete_user", "insert_package"]), Some("insert_package"));
        assert_eq!(did_you_mean("enabel_user", ["enable_user", "disable_user"]), Some("enable_user"));
        assert_eq!(did_you_mean("postgre", ["postgres", "mariadb", "sqlite"]), Some("postgres"));
        // Legacy importer: property names and types, in any case, or cut short.
        assert_eq!(did_you_mean("query", ["Query", "Parameters"]), Some("Query"));
        assert_eq!(did_you_mean("Parameter", ["Query", "Parameters"]), Some("Parameters"));
        assert_eq!(did_you_mean("Param", ["Query", "Parameters"]), Some("Parameters"));
        assert_eq!(did_you_mean("Strng", ["String", "Long", "Integer"]), Some("String"));
        assert_eq!(did_you_mean("TAG", ["Type", "TAGS"]), Some("TAGS"));
        assert_eq!(did_you_mean("Frobnicate", ["Query", "Parameters"]), None);
    }

    #[test]
    fn long_inputs_get_no_fuzzy_match() {
        let long = "x".repeat(10_000);
        assert_eq!(did_you_mean(&long, ["xxxx"]), None);
        let upper = long.to_uppercase();
        assert_eq!(did_you_mean(&long, [upper.as_str()]), Some(upper.as_str()));
    }
}
