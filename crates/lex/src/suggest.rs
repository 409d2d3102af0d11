//! "Did you mean": the closest known name to a misspelled one.

/// The candidate closest to `given`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for c in candidates {
        if c == given {
            continue;
        }
        let score =
            if c.to_lowercase() == given_lower { 1.0 } else { strsim::jaro_winkler(&given_lower, &c.to_lowercase()) };
        if score >= 0.8 && best.is_none_or(|(_, s)| score > s) {
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
        assert_eq!(did_you_mean("depend_on", ["depends_on", "description"]), Some("depends_on"));
    }
}
