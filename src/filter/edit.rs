//! A change to a subscription's filter as the control channel asks for it, applied
//! to the filter the subscription has at the moment it is applied: the proxy applies
//! it inside the one message that changes the subscription, so two updates at once
//! cannot both read the same filter and the later write lose the earlier change.

use super::{Filter, ParseError, ScopeGrant};

/// Each part given replaces the current one; a part not given is kept, except
/// scopes under a signed URL (see [`FilterEdit::signed`]).
#[derive(Debug, Clone)]
pub struct FilterEdit {
    /// New `types`, not yet validated.
    pub types: Option<Vec<String>>,
    /// New `where` clauses, not yet validated.
    pub wheres: Option<Vec<String>>,
    /// New `scopes`, not yet validated.
    pub scopes: Option<Vec<String>>,
    /// What an absent or empty `scopes` grants the asker (every scope for Basic
    /// credentials, none for a signed URL).
    pub absent_scopes: ScopeGrant,
    /// The asker is a signed URL: its filter is the one it signs, scopes included,
    /// so without `scopes` it grants none rather than keeping a wider grant that
    /// Basic credentials gave.
    pub signed: bool,
}

impl FilterEdit {
    /// The filter `current` becomes. An update never widens what a subscription may
    /// see by leaving scopes out.
    pub fn apply(&self, current: &Filter) -> Result<Filter, ParseError> {
        let (scopes, absent) = match (&self.scopes, current.scopes_text()) {
            (Some(given), _) => (Some(given.clone()), self.absent_scopes.clone()),
            (None, _) if self.signed => (None, self.absent_scopes.clone()),
            (None, None) => (None, ScopeGrant::All),
            (None, Some(kept)) => (None, ScopeGrant::Only(kept)),
        };
        Filter::from_parts(
            self.types.clone().unwrap_or_else(|| current.types_text()),
            self.wheres.clone().unwrap_or_else(|| current.wheres_text()),
            scopes,
            absent,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    fn edit(types: Option<Vec<String>>, wheres: Option<Vec<String>>, signed: bool) -> FilterEdit {
        FilterEdit {
            types,
            wheres,
            scopes: None,
            absent_scopes: if signed {
                ScopeGrant::Only(Vec::new())
            } else {
                ScopeGrant::All
            },
            signed,
        }
    }

    #[test]
    fn parts_not_given_are_kept_and_given_ones_replaced() {
        let current =
            Filter::parse(Some("call.*"), &["data.n>1"], Some("ops"), ScopeGrant::All).unwrap();
        let types_only = edit(strings(&["dial.*"]), None, false)
            .apply(&current)
            .unwrap();
        assert_eq!(types_only.types_text(), ["dial.*"]);
        assert_eq!(types_only.wheres_text(), ["data.n>1"]);
        assert_eq!(types_only.scopes_text(), strings(&["ops"]), "scopes kept");
        let wheres_only = edit(None, strings(&["data.n<9"]), false)
            .apply(&current)
            .unwrap();
        assert_eq!(wheres_only.types_text(), ["call.*"]);
        assert_eq!(wheres_only.wheres_text(), ["data.n<9"]);
    }

    #[test]
    fn a_signed_edit_without_scopes_grants_none_and_bad_parts_are_refused() {
        let current = Filter::parse(Some("call.*"), &[], None, ScopeGrant::All).unwrap();
        let signed = edit(strings(&["call.end"]), None, true)
            .apply(&current)
            .unwrap();
        assert_eq!(signed.scopes_text(), Some(Vec::new()));
        let basic = edit(strings(&["call.end"]), None, false)
            .apply(&current)
            .unwrap();
        assert_eq!(basic.scopes_text(), None, "every scope, as before");
        let bad = edit(None, strings(&["data.n<<9"]), false).apply(&current);
        assert_eq!(bad.unwrap_err().param(), "where");
    }
}
