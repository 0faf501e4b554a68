//! `[keys]`: how servers learn each other's signing keys, the key notaries, and each server's
//! `trusted_key_servers`.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::super::duration::DurationUs;
use super::super::error::{Problem, Res};
use super::super::model::{KeyDistribution, KeysSpec, ServerSpec};
use super::super::names::abbreviate;
use super::super::raw::{RawKeys, RawKnobs, RawServer};
use super::positive_or;
use super::servers::entry_names;

/// Synapse's default key refresh: a published key is valid for a day.
const DEFAULT_VALIDITY: DurationUs = DurationUs(24 * 3_600_000_000);
/// Most notaries a scenario may declare.
pub(crate) const MAX_NOTARIES: usize = 16;

pub(super) fn resolve(
    raw: Option<&RawKeys>,
    servers: &[ServerSpec],
    groups: &BTreeMap<String, Vec<String>>,
) -> Res<KeysSpec> {
    let Some(raw) = raw else {
        return Ok(KeysSpec {
            distribution: KeyDistribution::Federation,
            notaries: Vec::new(),
            validity_us: DEFAULT_VALIDITY.0,
        });
    };
    let mut notaries = Vec::new();
    if let Some(list) = &raw.notaries {
        if list.get_ref().len() > MAX_NOTARIES {
            return Err(Problem::at(list.span(), format!("at most {MAX_NOTARIES} notaries")));
        }
        let mut seen = BTreeSet::new();
        for name in list.get_ref() {
            let text = name.get_ref();
            super::servers::check_server_name_pub(text, &name.span())?;
            if servers.iter().any(|s| &s.name == text) || groups.contains_key(text) {
                let message =
                    format!("notary \"{text}\" has the name of a server or group: a notary is a node of its own");
                return Err(Problem::at(name.span(), message));
            }
            if !seen.insert(text.clone()) {
                return Err(Problem::at(name.span(), format!("notary \"{text}\" is listed twice")));
            }
            notaries.push(text.clone());
        }
    }
    let distribution = raw.distribution.as_ref().map_or(KeyDistribution::Federation, |d| *d.get_ref());
    if distribution == KeyDistribution::Preshared {
        if let Some(list) = raw.notaries.as_ref().filter(|l| !l.get_ref().is_empty()) {
            return Err(Problem::at(
                list.span(),
                "notaries only apply to keys.distribution = \"federation\" (preshared keys need no fetching)",
            ));
        }
    }
    Ok(KeysSpec { distribution, notaries, validity_us: positive_or(&raw.validity, DEFAULT_VALIDITY, "keys.validity")? })
}

/// Each server's `trusted_key_servers` (from its entry or `[defaults]`): notary names, in
/// order; default every notary.
pub(super) fn trusted_key_servers(
    raw: &[Spanned<RawServer>],
    defaults: Option<&RawKnobs>,
    servers: &mut [ServerSpec],
    keys: &KeysSpec,
) -> Res<()> {
    let mut next = 0;
    for entry in raw {
        let count = entry_names(entry)?.len();
        let knobs = entry.get_ref().knobs().or(&defaults.cloned().unwrap_or_default());
        let trusted = match &knobs.trusted_key_servers {
            None => keys.notaries.clone(),
            Some(list) => {
                if keys.distribution == KeyDistribution::Preshared {
                    return Err(Problem::at(
                        list.span(),
                        "trusted_key_servers only applies to keys.distribution = \"federation\"",
                    ));
                }
                let mut names = Vec::new();
                for name in list.get_ref() {
                    if !keys.notaries.contains(name.get_ref()) {
                        let known = if keys.notaries.is_empty() {
                            "the scenario declares none ([keys] notaries = [...])".to_owned()
                        } else {
                            format!("notaries are {}", abbreviate(&keys.notaries))
                        };
                        return Err(Problem::at(
                            name.span(),
                            format!("unknown notary \"{}\" in trusted_key_servers; {known}", name.get_ref()),
                        ));
                    }
                    if !names.contains(name.get_ref()) {
                        names.push(name.get_ref().clone());
                    }
                }
                names
            }
        };
        for spec in &mut servers[next..next + count] {
            spec.trusted_key_servers = trusted.clone();
        }
        next += count;
    }
    Ok(())
}
