//! Card health from NVML's XID events (node-side.md §7): which XIDs make a card unhealthy, and
//! what one event means for the cards. The NVML event loop lives in
//! [`crate::discovery::nvml::XidWatcher`]; it hands each event to [`judge`] and marks cards
//! through [`crate::discovery::Inventory::mark_unhealthy`].
//!
//! Policy, as HAMi's: XIDs 13, 31, 43, 45, 68 and 109 are application errors and never make a
//! card unhealthy. `DP_DISABLE_HEALTHCHECKS` = `all` or `xids` turns health checking off;
//! otherwise it is a comma list of more XIDs to ignore. `DP_ENABLE_HEALTHCHECKS` is a comma list
//! of XIDs that are fatal even when ignored above; `all` makes every XID fatal.

use std::collections::BTreeSet;

/// The XIDs HAMi treats as application errors.
pub const IGNORED_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];
/// The environment variable that disables checks or adds ignored XIDs.
pub const DISABLE_ENV: &str = "DP_DISABLE_HEALTHCHECKS";
/// The environment variable that makes XIDs fatal.
pub const ENABLE_ENV: &str = "DP_ENABLE_HEALTHCHECKS";

/// A health setting that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}={value:?}: {item:?} is not an XID number (or `all`)")]
pub struct PolicyError {
    pub variable: &'static str,
    pub value: String,
    pub item: String,
}

/// Which XIDs make a card unhealthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XidPolicy {
    /// Health checking is off: no event changes health.
    pub disabled: bool,
    /// Every XID is fatal.
    pub all_fatal: bool,
    /// XIDs that never change health (HAMi's list and `DP_DISABLE_HEALTHCHECKS`).
    pub ignored: BTreeSet<u64>,
    /// XIDs that are fatal even when ignored (`DP_ENABLE_HEALTHCHECKS`).
    pub fatal: BTreeSet<u64>,
}

impl Default for XidPolicy {
    fn default() -> XidPolicy {
        XidPolicy {
            disabled: false,
            all_fatal: false,
            ignored: IGNORED_XIDS.into_iter().collect(),
            fatal: BTreeSet::new(),
        }
    }
}

fn xids(variable: &'static str, value: &str) -> Result<BTreeSet<u64>, PolicyError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<u64>().map_err(|_| PolicyError {
                variable,
                value: value.to_string(),
                item: item.to_string(),
            })
        })
        .collect()
}

impl XidPolicy {
    /// The policy from the two environment variables' values (absent = unset).
    ///
    /// ```
    /// # use hamr_node_agent::health::XidPolicy;
    /// let p = XidPolicy::from_env(Some("48"), Some("31")).unwrap();
    /// assert!(!p.is_fatal(48) && p.is_fatal(31) && !p.is_fatal(13) && p.is_fatal(79));
    /// ```
    pub fn from_env(disable: Option<&str>, enable: Option<&str>) -> Result<XidPolicy, PolicyError> {
        let mut policy = XidPolicy::default();
        if let Some(value) = disable {
            match value.trim().to_ascii_lowercase().as_str() {
                "all" | "xids" => policy.disabled = true,
                _ => policy.ignored.extend(xids(DISABLE_ENV, value)?),
            }
        }
        if let Some(value) = enable {
            match value.trim().to_ascii_lowercase().as_str() {
                "all" => policy.all_fatal = true,
                _ => policy.fatal = xids(ENABLE_ENV, value)?,
            }
        }
        Ok(policy)
    }

    /// Reads `DP_DISABLE_HEALTHCHECKS` and `DP_ENABLE_HEALTHCHECKS` from the process environment.
    pub fn from_process_env() -> Result<XidPolicy, PolicyError> {
        let disable = std::env::var(DISABLE_ENV).ok();
        let enable = std::env::var(ENABLE_ENV).ok();
        XidPolicy::from_env(disable.as_deref(), enable.as_deref())
    }

    /// Whether `xid` makes a card unhealthy.
    pub fn is_fatal(&self, xid: u64) -> bool {
        if self.disabled {
            return false;
        }
        self.all_fatal || self.fatal.contains(&xid) || !self.ignored.contains(&xid)
    }
}

/// One thing the NVML event loop saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// A critical XID event. `card` is the UUID of the device it names (`None` when the UUID
    /// could not be read); `xid` is `None` when NVML did not say which XID.
    Xid {
        card: Option<String>,
        xid: Option<u64>,
    },
    /// Another event type (ECC single/double bit): logged, no health change.
    Other,
    /// Waiting for events failed with something other than a timeout.
    WaitFailed(String),
}

/// What an event means for the cards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No health change.
    Ignore,
    /// This card is unhealthy, for this reason.
    Card(String, String),
    /// Every card is unhealthy (NVML itself failed, or the event's card is unknown to it).
    All(String),
}

/// What `event` means under `policy`, for a node whose cards are `cards` (UUIDs). As HAMi: an
/// event for a card the node does not serve is ignored; a failed wait or an unreadable UUID
/// marks every card.
pub fn judge(policy: &XidPolicy, event: &HealthEvent, cards: &[String]) -> Verdict {
    if policy.disabled {
        return Verdict::Ignore;
    }
    match event {
        HealthEvent::Other => Verdict::Ignore,
        HealthEvent::WaitFailed(reason) => {
            Verdict::All(format!("waiting for NVML events: {reason}"))
        }
        HealthEvent::Xid { card, xid } => {
            if let Some(xid) = xid
                && !policy.is_fatal(*xid)
            {
                return Verdict::Ignore;
            }
            let what = xid.map_or_else(|| "an unknown XID".to_string(), |x| format!("XID {x}"));
            match card {
                None => Verdict::All(format!("{what} on a device whose UUID could not be read")),
                Some(uuid) if cards.contains(uuid) => Verdict::Card(uuid.clone(), what),
                Some(_) => Verdict::Ignore,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards() -> Vec<String> {
        vec!["GPU-a".to_string(), "GPU-b".to_string()]
    }

    fn xid(card: &str, xid: u64) -> HealthEvent {
        HealthEvent::Xid {
            card: Some(card.to_string()),
            xid: Some(xid),
        }
    }

    #[test]
    fn application_xids_are_ignored_and_others_mark_their_card() {
        let p = XidPolicy::default();
        for x in IGNORED_XIDS {
            assert_eq!(
                judge(&p, &xid("GPU-a", x), &cards()),
                Verdict::Ignore,
                "XID {x}"
            );
        }
        assert_eq!(
            judge(&p, &xid("GPU-b", 79), &cards()),
            Verdict::Card("GPU-b".into(), "XID 79".into())
        );
    }

    #[test]
    fn the_disable_variable_turns_checks_off_or_adds_ignored_xids() {
        for off in ["all", "xids", "XIDS"] {
            let p = XidPolicy::from_env(Some(off), None).expect("valid");
            assert_eq!(
                judge(&p, &xid("GPU-a", 79), &cards()),
                Verdict::Ignore,
                "{off}"
            );
            assert_eq!(
                judge(&p, &HealthEvent::WaitFailed("x".into()), &cards()),
                Verdict::Ignore
            );
        }
        let p = XidPolicy::from_env(Some("79, 48"), None).expect("valid");
        assert!(!p.is_fatal(79) && !p.is_fatal(48) && !p.is_fatal(13) && p.is_fatal(94));
    }

    #[test]
    fn the_enable_variable_makes_ignored_xids_fatal_or_all_of_them() {
        let p = XidPolicy::from_env(Some("79"), Some("13,79")).expect("valid");
        assert!(p.is_fatal(13) && p.is_fatal(79) && !p.is_fatal(31));
        let p = XidPolicy::from_env(None, Some("all")).expect("valid");
        assert!(IGNORED_XIDS.iter().all(|x| p.is_fatal(*x)));
    }

    #[test]
    fn a_malformed_list_names_the_variable_and_the_item() {
        let err = XidPolicy::from_env(Some("13,4x"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"DP_DISABLE_HEALTHCHECKS="13,4x": "4x" is not an XID number (or `all`)"#
        );
    }

    #[test]
    fn unknown_cards_are_ignored_and_unreadable_ones_mark_all() {
        let p = XidPolicy::default();
        assert_eq!(judge(&p, &xid("GPU-z", 79), &cards()), Verdict::Ignore);
        assert_eq!(
            judge(
                &p,
                &HealthEvent::Xid {
                    card: None,
                    xid: Some(79)
                },
                &cards()
            ),
            Verdict::All("XID 79 on a device whose UUID could not be read".into())
        );
        assert_eq!(
            judge(
                &p,
                &HealthEvent::Xid {
                    card: Some("GPU-a".into()),
                    xid: None
                },
                &cards()
            ),
            Verdict::Card("GPU-a".into(), "an unknown XID".into()),
            "an XID NVML cannot name is treated as fatal"
        );
        assert_eq!(judge(&p, &HealthEvent::Other, &cards()), Verdict::Ignore);
    }
}
