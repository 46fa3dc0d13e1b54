//! Works out what to change so that the kernel holds the wanted layout: a pure function of
//! the desired layout (jails, their bans, the mode) and a snapshot of what exists.
//!
//! [`plan`] compares the chains, jumps and sets logjail should have with `iptables -S` and
//! `ipset list -t` and returns the [`Operation`]s that close the gap, in the order they must
//! run: sets before the rules that match them, chains before the jumps to them, the jumps into
//! a chain that goes before the chain, and sets are destroyed last, once no rule uses them.
//! Each family's filter table is planned first, then its raw table (the raw `PREROUTING`
//! hook); a table no jail uses is still looked at, so that what a run on another target
//! left there is taken away. Nothing here runs a program; `apply` does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::ipset::{self, SetHeader};
use super::names::{Family, Hook, Names, Table};
use super::rules;
use super::target::Target;
use super::{ActiveMode, FirewallError, JailRule, LayoutReport};

/// A jail's bans: address and end (`None`: permanent).
pub type Bans = HashMap<IpAddr, Option<DateTime<Utc>>>;

/// What should be in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    pub names: &'a Names,
    pub mode: ActiveMode,
    /// Decides which hook a jail's `docker-user` bans go to.
    pub target: Target,
    /// Families with a working iptables; the others are left alone.
    pub families: &'a [Family],
    /// Every jail, in name order (the order of rules in the hook chains).
    pub jails: &'a [JailLayout<'a>],
    /// Turns ban ends into the set timeouts of refilled entries.
    pub now: DateTime<Utc>,
    /// Entries a set is to be created with room for, by set name, beyond those it gets now.
    pub set_room: &'a HashMap<String, usize>,
}

/// One jail of the layout.
#[derive(Debug, Clone, Copy)]
pub struct JailLayout<'a> {
    pub rule: &'a JailRule,
    pub bans: &'a Bans,
}

impl JailLayout<'_> {
    fn count(&self, family: Family) -> usize {
        bans_in(self.bans, family)
    }
}

/// The hooks (INPUT, DOCKER-USER, raw PREROUTING) a jail's rule bans in on a target.
pub(super) fn hooks_of(rule: &JailRule, target: Target) -> BTreeSet<Hook> {
    rule.chains
        .iter()
        .map(|chain| Hook::for_chain(*chain, target))
        .collect()
}

/// Whether any acting jail bans in `table` (the raw table is only required then).
pub(super) fn uses_table<'a>(
    rules: impl IntoIterator<Item = &'a JailRule>,
    target: Target,
    table: Table,
) -> bool {
    rules.into_iter().filter(|rule| rule.acts()).any(|rule| {
        hooks_of(rule, target)
            .iter()
            .any(|hook| hook.table() == table)
    })
}

/// How many of `bans` are addresses of `family`.
pub(super) fn bans_in(bans: &Bans, family: Family) -> usize {
    bans.keys()
        .filter(|host| Family::of(host) == family)
        .count()
}

/// One family's table as listed by `iptables -t TABLE -S`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub chains: BTreeSet<String>,
    /// Per chain, each rule as listed after `-A CHAIN ` (see [`rules::listing_text`]).
    pub rules: BTreeMap<String, Vec<String>>,
}

static EMPTY_LISTING: Listing = Listing {
    chains: BTreeSet::new(),
    rules: BTreeMap::new(),
};

impl Listing {
    pub fn parse(listing: &str) -> Listing {
        let mut parsed = Listing::default();
        for line in listing.lines() {
            if let Some(rest) = line.strip_prefix("-A ") {
                let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
                // Looked up before inserting: a chain of 100,000 ban rules would otherwise
                // allocate its name once per rule.
                match parsed.rules.get_mut(chain) {
                    Some(existing) => existing.push(rule.to_string()),
                    None => {
                        parsed
                            .rules
                            .insert(chain.to_string(), vec![rule.to_string()]);
                    }
                }
            } else if let Some(rest) = line
                .strip_prefix("-N ")
                .or_else(|| line.strip_prefix("-P "))
            {
                let chain = rest.split(' ').next().unwrap_or(rest);
                parsed.chains.insert(chain.to_string());
            }
        }
        parsed
    }

    pub fn rules_of(&self, chain: &str) -> &[String] {
        self.rules.get(chain).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// What exists: the filter and raw listings of each working family and, in ipset mode, the
/// sets. A table missing from `listings` holds nothing.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub listings: BTreeMap<(Family, Table), Listing>,
    /// `ipset list -t` by set name; empty in rules mode.
    pub sets: HashMap<String, SetHeader>,
}

impl Snapshot {
    pub fn listing(&self, family: Family, table: Table) -> &Listing {
        self.listings
            .get(&(family, table))
            .unwrap_or(&EMPTY_LISTING)
    }
}

/// A chain written whole by [`Operation::WriteChains`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWrite {
    pub chain: String,
    /// In order, as listed after `-A CHAIN `.
    pub rules: Vec<String>,
    /// Whether the chain existed (the report says "rules of" then, "chain" otherwise).
    pub existed: bool,
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `ipset create` a jail's `hash:ip` set with timeouts, and a hash sized for `room`
    /// entries.
    CreateSet {
        set: String,
        family: Family,
        room: usize,
    },
    /// Adds the state's bans to a set (`ipset restore -exist`); `missing` is (missing, known)
    /// when the set existed with fewer entries than logjail holds.
    FillSet {
        set: String,
        entries: Vec<(IpAddr, u64)>,
        missing: Option<(usize, usize)>,
    },
    /// Makes `DOCKER-USER` (ending in `RETURN`) where Docker has not.
    CreateDockerUser { family: Family },
    /// Puts the jump to `DOCKER-USER` at the top of `FORWARD`.
    InsertDockerUserJump { family: Family },
    /// Moves the jump to `DOCKER-USER` above Docker's rules, in one transaction.
    RaiseDockerUserJump { family: Family },
    /// Declares (empties or creates) chains and writes their rules, in one
    /// `iptables-restore --noflush` transaction.
    WriteChains {
        family: Family,
        table: Table,
        chains: Vec<ChainWrite>,
    },
    /// `-I parent 1 -j target` in the hook's table: the jump from a builtin chain to a hook
    /// chain, placed first.
    InsertJump {
        family: Family,
        hook: Hook,
        target: String,
    },
    /// Deletes one of several identical jumps to a hook chain.
    DeleteDuplicateJump {
        family: Family,
        hook: Hook,
        target: String,
    },
    /// Deletes a rule (as listed) of a chain logjail does not own that jumps to a chain that
    /// goes.
    DeleteRule {
        family: Family,
        table: Table,
        chain: String,
        rule: String,
    },
    FlushChain {
        family: Family,
        table: Table,
        chain: String,
    },
    DeleteChain {
        family: Family,
        table: Table,
        chain: String,
    },
    /// `ipset destroy`; a failure is only warned about (the set may be in use elsewhere).
    DestroySet { set: String },
}

impl Operation {
    /// Adds what this operation did, once done, to a layout report.
    pub fn record(&self, report: &mut LayoutReport) {
        match self {
            Operation::CreateSet { set, .. } => report.repaired.push(format!("set {set}")),
            Operation::FillSet {
                set,
                missing: Some((missing, known)),
                ..
            } => report.repaired.push(format!(
                "set {set} ({missing} of {known} entries were missing)"
            )),
            Operation::FillSet { missing: None, .. }
            | Operation::DeleteRule { .. }
            | Operation::FlushChain { .. } => {}
            Operation::CreateDockerUser { family } => report.repaired.push(format!(
                "{} chain DOCKER-USER (Docker has not made it)",
                family.label()
            )),
            Operation::InsertDockerUserJump { family } => report
                .repaired
                .push(format!("{} jump FORWARD -> DOCKER-USER", family.label())),
            Operation::RaiseDockerUserJump { family } => report.repaired.push(format!(
                "{} jump FORWARD -> DOCKER-USER (moved above Docker's rules)",
                family.label()
            )),
            Operation::WriteChains {
                family,
                table,
                chains,
            } => {
                for write in chains {
                    let what = if write.existed { "rules of" } else { "chain" };
                    report.repaired.push(format!(
                        "{}{} {what} {}",
                        family.label(),
                        table_word(*table),
                        write.chain
                    ));
                }
            }
            Operation::InsertJump {
                family,
                hook,
                target,
            } => report.repaired.push(format!(
                "{} jump {} -> {target}",
                family.label(),
                hook.place()
            )),
            Operation::DeleteDuplicateJump {
                family,
                hook,
                target,
            } => report.removed.push(format!(
                "{} duplicate jump {} -> {target}",
                family.label(),
                hook.place()
            )),
            Operation::DeleteChain {
                family,
                table,
                chain,
            } => report.removed.push(format!(
                "{}{} chain {chain}",
                family.label(),
                table_word(*table)
            )),
            Operation::DestroySet { set } => report.removed.push(format!("set {set}")),
        }
    }
}

/// ` raw` for the raw table in reports; nothing for filter, where reports always were.
fn table_word(table: Table) -> &'static str {
    match table {
        Table::Filter => "",
        Table::Raw => " raw",
    }
}

/// Seconds until `end`, rounded up; `None` for a permanent ban, `Some(0)` when passed.
pub fn remaining(end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<u64> {
    end.map(|end| {
        let millis = (end - now).num_milliseconds();
        if millis <= 0 {
            0
        } else {
            u64::try_from(millis).unwrap_or(u64::MAX).div_ceil(1000)
        }
    })
}

/// The operations that turn `snapshot` into `layout`. Fails, before any change, when a set
/// under one of logjail's names cannot be used (another type or family, no timeouts).
pub fn plan(layout: &Layout, snapshot: &Snapshot) -> Result<Vec<Operation>, FirewallError> {
    let mut operations = Vec::new();
    let expected_sets = expected_sets(layout);
    plan_sets(layout, &expected_sets, &snapshot.sets, &mut operations)?;
    for family in layout.families {
        plan_docker_user(
            layout,
            *family,
            snapshot.listing(*family, Table::Filter),
            &mut operations,
        );
        for table in Table::ALL {
            plan_table(
                layout,
                *family,
                table,
                snapshot.listing(*family, table),
                &mut operations,
            );
        }
    }
    // Sets can only be destroyed once no rule uses them, so after the chains.
    let mut leftovers: Vec<&String> = snapshot
        .sets
        .keys()
        .filter(|name| layout.names.owns(name) && !expected_sets.contains_key(*name))
        .collect();
    leftovers.sort();
    operations.extend(
        leftovers
            .into_iter()
            .map(|set| Operation::DestroySet { set: set.clone() }),
    );
    Ok(operations)
}

/// Everything of ours in one family's table, to be removed: the jumps to our chains from
/// chains we do not own, then the chains' rules, then the chains.
pub fn teardown(names: &Names, family: Family, table: Table, listing: &Listing) -> Vec<Operation> {
    let ours: Vec<&String> = listing
        .chains
        .iter()
        .filter(|chain| names.owns(chain))
        .collect();
    let mut operations = Vec::new();
    remove_chains(
        names,
        (family, table),
        listing,
        &ours,
        &BTreeMap::new(),
        &mut operations,
    );
    operations
}

/// Every set of ours, to be destroyed (after [`teardown`] of the chains that use them).
pub fn teardown_sets(names: &Names, sets: &HashMap<String, SetHeader>) -> Vec<Operation> {
    let mut ours: Vec<&String> = sets.keys().filter(|name| names.owns(name)).collect();
    ours.sort();
    ours.into_iter()
        .map(|set| Operation::DestroySet { set: set.clone() })
        .collect()
}

fn acting<'a>(layout: &'a Layout) -> impl Iterator<Item = &'a JailLayout<'a>> {
    layout.jails.iter().filter(|jail| jail.rule.acts())
}

/// The set of each acting jail and family, by name (ipset mode only).
fn expected_sets<'a>(layout: &'a Layout) -> BTreeMap<String, (&'a JailLayout<'a>, Family)> {
    let mut sets = BTreeMap::new();
    if layout.mode == ActiveMode::Ipset {
        for jail in acting(layout) {
            for family in layout.families {
                sets.insert(
                    layout.names.jail_set(&jail.rule.name, *family),
                    (jail, *family),
                );
            }
        }
    }
    sets
}

fn plan_sets(
    layout: &Layout,
    expected: &BTreeMap<String, (&JailLayout, Family)>,
    existing: &HashMap<String, SetHeader>,
    operations: &mut Vec<Operation>,
) -> Result<(), FirewallError> {
    for (set, (jail, family)) in expected {
        let missing = match existing.get(set) {
            None => {
                let room = layout.set_room.get(set).copied().unwrap_or(0);
                operations.push(Operation::CreateSet {
                    set: set.clone(),
                    family: *family,
                    room: room.max(jail.count(*family)),
                });
                None
            }
            Some(header) if !header.fits(*family) => {
                return Err(FirewallError::Set {
                    set: set.clone(),
                    message: format!(
                        "exists as {} family {} without the timeout option logjail needs; \
                         remove it (ipset destroy {set}) or change firewall.chain_prefix",
                        header.kind, header.family
                    ),
                });
            }
            Some(header) => {
                let known = jail.count(*family);
                if header.entries >= known {
                    continue;
                }
                Some((known - header.entries, known))
            }
        };
        let entries: Vec<(IpAddr, u64)> = jail
            .bans
            .iter()
            .filter(|(host, _)| Family::of(host) == *family)
            .map(|(host, end)| (*host, ipset::timeout_for(remaining(*end, layout.now))))
            .collect();
        if !entries.is_empty() {
            operations.push(Operation::FillSet {
                set: set.clone(),
                entries,
                missing,
            });
        }
    }
    Ok(())
}

/// A jail chain's rules: the set matches (ipset mode) or one rule per ban of the family,
/// in address order (rules mode).
pub fn jail_chain_rules(
    names: &Names,
    mode: ActiveMode,
    rule: &JailRule,
    bans: &Bans,
    hook: Hook,
    family: Family,
) -> Vec<String> {
    let verdicts = rules::verdicts(rule.action, hook, family);
    match mode {
        ActiveMode::Ipset => rules::set_rules(&names.jail_set(&rule.name, family), &verdicts)
            .iter()
            .map(|rule| rules::listing_text(rule))
            .collect(),
        ActiveMode::Rules => {
            let mut bans: Vec<(&IpAddr, &Option<DateTime<Utc>>)> = bans
                .iter()
                .filter(|(host, _)| Family::of(host) == family)
                .collect();
            bans.sort();
            bans.into_iter()
                .flat_map(|(host, end)| rules::ban_rules(*host, *end, &verdicts))
                .map(|rule| rules::listing_text(&rule))
                .collect()
        }
    }
}

/// Every chain logjail should have in one family's table, with its rules in order.
fn expected_chains(layout: &Layout, family: Family, table: Table) -> BTreeMap<String, Vec<String>> {
    let names = layout.names;
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for jail in acting(layout) {
        let hooks = hooks_of(jail.rule, layout.target);
        for hook in hooks.into_iter().filter(|hook| hook.table() == table) {
            let jail_chain = names.jail_chain(&jail.rule.name, hook);
            chains.entry(names.hook_chain(hook)).or_default().extend(
                rules::hook_jumps(hook, &jail.rule.ports, jail.rule.protocol, &jail_chain)
                    .iter()
                    .map(|rule| rules::listing_text(rule)),
            );
            chains.insert(
                jail_chain,
                jail_chain_rules(names, layout.mode, jail.rule, jail.bans, hook, family),
            );
        }
    }
    chains
}

/// Every hook some acting jail bans in.
fn hooks_in_use(layout: &Layout) -> BTreeSet<Hook> {
    acting(layout)
        .flat_map(|jail| hooks_of(jail.rule, layout.target))
        .collect()
}

/// `DOCKER-USER` itself and the jump to it from `FORWARD`, when a jail bans there.
fn plan_docker_user(
    layout: &Layout,
    family: Family,
    listing: &Listing,
    operations: &mut Vec<Operation>,
) {
    if hooks_in_use(layout).contains(&Hook::DockerUser) {
        if !listing.chains.contains("DOCKER-USER") {
            // What Docker itself creates; Docker keeps it when it starts later.
            operations.push(Operation::CreateDockerUser { family });
        }
        match rules::docker_user_jump(listing.rules_of("FORWARD")) {
            rules::DockerUserJump::Missing => {
                operations.push(Operation::InsertDockerUserJump { family });
            }
            rules::DockerUserJump::BelowDocker => {
                operations.push(Operation::RaiseDockerUserJump { family });
            }
            rules::DockerUserJump::InPlace => {}
        }
    }
}

/// Our chains and the jumps to them in one family's table.
fn plan_table(
    layout: &Layout,
    family: Family,
    table: Table,
    listing: &Listing,
    operations: &mut Vec<Operation>,
) {
    let names = layout.names;
    let hooks: BTreeSet<Hook> = hooks_in_use(layout)
        .into_iter()
        .filter(|hook| hook.table() == table)
        .collect();

    // Chains whose content differs are rewritten whole, atomically, in one restore.
    let expected = expected_chains(layout, family, table);
    let mut writes = Vec::new();
    for (chain, wanted) in &expected {
        let existed = listing.chains.contains(chain);
        let current = listing.rules_of(chain);
        let is_hook_chain = Hook::ALL
            .iter()
            .any(|hook| names.hook_chain(*hook) == *chain);
        let same = if layout.mode == ActiveMode::Rules && !is_hook_chain {
            // Per-address rules are appended as bans come: compare as sets.
            let mut a: Vec<&String> = current.iter().collect();
            let mut b: Vec<&String> = wanted.iter().collect();
            a.sort();
            b.sort();
            a == b
        } else {
            current == wanted.as_slice()
        };
        if !existed || !same {
            writes.push(ChainWrite {
                chain: chain.clone(),
                rules: wanted.clone(),
                existed,
            });
        }
    }
    if !writes.is_empty() {
        operations.push(Operation::WriteChains {
            family,
            table,
            chains: writes,
        });
    }

    for hook in &hooks {
        let parent = hook.parent();
        let target = names.hook_chain(*hook);
        let jump = format!("-j {target}");
        let jumps = listing
            .rules_of(parent)
            .iter()
            .filter(|rule| **rule == jump)
            .count();
        if jumps == 0 {
            operations.push(Operation::InsertJump {
                family,
                hook: *hook,
                target: target.clone(),
            });
        }
        for _ in 1..jumps {
            operations.push(Operation::DeleteDuplicateJump {
                family,
                hook: *hook,
                target: target.clone(),
            });
        }
    }

    let stale: Vec<&String> = listing
        .chains
        .iter()
        .filter(|chain| names.owns(chain) && !expected.contains_key(*chain))
        .collect();
    remove_chains(
        names,
        (family, table),
        listing,
        &stale,
        &expected,
        operations,
    );
}

/// Removes chains of ours: first the jumps to them from chains that stay as they are, then
/// their rules, then the chains.
fn remove_chains(
    names: &Names,
    (family, table): (Family, Table),
    listing: &Listing,
    doomed: &[&String],
    rewritten: &BTreeMap<String, Vec<String>>,
    operations: &mut Vec<Operation>,
) {
    if doomed.is_empty() {
        return;
    }
    for (chain, chain_rules) in &listing.rules {
        // Our own chains that stay only ever jump to chains that stay.
        if names.owns(chain) || rewritten.contains_key(chain) {
            continue;
        }
        for rule in chain_rules {
            let tokens = rules::tokenize(rule);
            let target = tokens
                .iter()
                .position(|token| token == "-j" || token == "-g")
                .and_then(|at| tokens.get(at + 1));
            if target.is_some_and(|target| doomed.contains(&target)) {
                operations.push(Operation::DeleteRule {
                    family,
                    table,
                    chain: chain.clone(),
                    rule: rule.clone(),
                });
            }
        }
    }
    for chain in doomed {
        operations.push(Operation::FlushChain {
            family,
            table,
            chain: (*chain).clone(),
        });
    }
    for chain in doomed {
        operations.push(Operation::DeleteChain {
            family,
            table,
            chain: (*chain).clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Chain, FirewallAction, PortRange, Ports, Protocol, RejectWith};

    const V4: Family = Family::V4;
    const V6: Family = Family::V6;
    const FILTER: Table = Table::Filter;
    const RAW: Table = Table::Raw;

    fn names() -> Names {
        Names::new("lj")
    }

    /// A jail for a published port (`web`, both hooks, port 80) or a host service.
    fn jail(name: &str, chains: &[Chain], port: u16, action: FirewallAction) -> JailRule {
        JailRule {
            name: name.to_string(),
            chains: chains.to_vec(),
            ports: Ports::List(vec![PortRange {
                first: port,
                last: port,
            }]),
            protocol: Protocol::Tcp,
            action,
            ignoreip: Vec::new(),
        }
    }

    fn web() -> JailRule {
        jail(
            "web",
            &[Chain::Input, Chain::DockerUser],
            80,
            FirewallAction::Drop,
        )
    }

    fn bans(list: &[(&str, Option<i64>)]) -> Bans {
        list.iter()
            .map(|(host, end)| {
                (
                    host.parse().unwrap(),
                    end.map(|secs| DateTime::<Utc>::from_timestamp(secs, 0).unwrap()),
                )
            })
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn listing(lines: &[&str]) -> Listing {
        Listing::parse(&lines.join("\n"))
    }

    fn header(family: &str, entries: usize) -> SetHeader {
        SetHeader {
            kind: "hash:ip".to_string(),
            family: family.to_string(),
            has_timeout: true,
            entries,
        }
    }

    fn snapshot(v4: Listing, v6: Listing, sets: &[(&str, SetHeader)]) -> Snapshot {
        Snapshot {
            listings: [((V4, FILTER), v4), ((V6, FILTER), v6)]
                .into_iter()
                .collect(),
            sets: sets
                .iter()
                .map(|(name, header)| ((*name).to_string(), header.clone()))
                .collect(),
        }
    }

    fn plan_for(
        mode: ActiveMode,
        jails: &[(&JailRule, &Bans)],
        snapshot: &Snapshot,
    ) -> Vec<Operation> {
        plan_on(Target::Docker, mode, jails, snapshot)
    }

    fn plan_on(
        target: Target,
        mode: ActiveMode,
        jails: &[(&JailRule, &Bans)],
        snapshot: &Snapshot,
    ) -> Vec<Operation> {
        try_plan(target, mode, jails, snapshot, &HashMap::new()).unwrap()
    }

    fn try_plan(
        target: Target,
        mode: ActiveMode,
        jails: &[(&JailRule, &Bans)],
        snapshot: &Snapshot,
        set_room: &HashMap<String, usize>,
    ) -> Result<Vec<Operation>, FirewallError> {
        let names = names();
        let jails: Vec<JailLayout> = jails
            .iter()
            .map(|(rule, bans)| JailLayout { rule, bans })
            .collect();
        let layout = Layout {
            names: &names,
            mode,
            target,
            families: &Family::ALL,
            jails: &jails,
            now: now(),
            set_room,
        };
        plan(&layout, snapshot)
    }

    /// A host where Docker runs and logjail's `web` jail (ipset mode) is fully in place.
    fn in_place_v4() -> Vec<&'static str> {
        vec![
            "-P INPUT ACCEPT",
            "-P FORWARD DROP",
            "-P OUTPUT ACCEPT",
            "-N DOCKER",
            "-N DOCKER-ISOLATION-STAGE-1",
            "-N DOCKER-USER",
            "-N lj-docker",
            "-N lj-input",
            "-N lj-j-web-d",
            "-N lj-j-web-i",
            "-A INPUT -j lj-input",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
            "-A FORWARD -o docker0 -j DOCKER",
            "-A DOCKER-USER -j lj-docker",
            "-A DOCKER-USER -j RETURN",
            "-A lj-docker -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j lj-j-web-d",
            "-A lj-input -p tcp -m multiport --dports 80 -j lj-j-web-i",
            "-A lj-j-web-d -m set --match-set lj-s-web-4 src -j DROP",
            "-A lj-j-web-i -m set --match-set lj-s-web-4 src -j DROP",
        ]
    }

    /// The same for IPv6, where Docker 20.10 makes no `DOCKER-USER` and logjail made it.
    fn in_place_v6() -> Vec<&'static str> {
        vec![
            "-P INPUT ACCEPT",
            "-P FORWARD ACCEPT",
            "-P OUTPUT ACCEPT",
            "-N DOCKER",
            "-N DOCKER-ISOLATION-STAGE-1",
            "-N DOCKER-USER",
            "-N lj-docker",
            "-N lj-input",
            "-N lj-j-web-d",
            "-N lj-j-web-i",
            "-A INPUT -j lj-input",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
            "-A DOCKER-USER -j lj-docker",
            "-A DOCKER-USER -j RETURN",
            "-A lj-docker -p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j lj-j-web-d",
            "-A lj-input -p tcp -m multiport --dports 80 -j lj-j-web-i",
            "-A lj-j-web-d -m set --match-set lj-s-web-6 src -j DROP",
            "-A lj-j-web-i -m set --match-set lj-s-web-6 src -j DROP",
        ]
    }

    fn web_sets(v4_entries: usize, v6_entries: usize) -> Vec<(&'static str, SetHeader)> {
        vec![
            ("lj-s-web-4", header("inet", v4_entries)),
            ("lj-s-web-6", header("inet6", v6_entries)),
        ]
    }

    fn without(lines: Vec<&'static str>, gone: &[&str]) -> Listing {
        listing(
            &lines
                .into_iter()
                .filter(|line| !gone.contains(line))
                .collect::<Vec<_>>(),
        )
    }

    fn report(operations: &[Operation]) -> LayoutReport {
        let mut report = LayoutReport::default();
        for operation in operations {
            operation.record(&mut report);
        }
        report
    }

    #[test]
    fn sets_created_at_start_get_room_for_the_bans_to_come() {
        let rule = web();
        let held = bans(&[("198.51.100.7", None), ("2001:db8::9", None)]);
        let bare = listing(&["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]);
        // Room asked for the IPv4 set only; the IPv6 set gets room for what it holds.
        let set_room = HashMap::from([("lj-s-web-4".to_string(), 100_000)]);
        let rooms: Vec<(String, usize)> = try_plan(
            Target::Docker,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(bare.clone(), bare, &[]),
            &set_room,
        )
        .unwrap()
        .into_iter()
        .filter_map(|operation| match operation {
            Operation::CreateSet { set, room, .. } => Some((set, room)),
            _ => None,
        })
        .collect();
        assert_eq!(
            rooms,
            [
                ("lj-s-web-4".to_string(), 100_000),
                ("lj-s-web-6".to_string(), 1)
            ]
        );
    }

    #[test]
    fn a_fresh_host_gets_sets_chains_and_jumps_in_order() {
        let rule = web();
        let held = bans(&[("198.51.100.7", None)]);
        let bare = listing(&["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(bare.clone(), bare, &[]),
        );
        let chains = |family: Family, tag: &str| Operation::WriteChains {
            family,
            table: FILTER,
            chains: vec![
                ChainWrite {
                    chain: "lj-docker".to_string(),
                    rules: vec![
                        "-p tcp -m conntrack --ctorigdstport 80 --ctdir ORIGINAL -j lj-j-web-d"
                            .to_string(),
                    ],
                    existed: false,
                },
                ChainWrite {
                    chain: "lj-input".to_string(),
                    rules: vec!["-p tcp -m multiport --dports 80 -j lj-j-web-i".to_string()],
                    existed: false,
                },
                ChainWrite {
                    chain: "lj-j-web-d".to_string(),
                    rules: vec![format!("-m set --match-set lj-s-web-{tag} src -j DROP")],
                    existed: false,
                },
                ChainWrite {
                    chain: "lj-j-web-i".to_string(),
                    rules: vec![format!("-m set --match-set lj-s-web-{tag} src -j DROP")],
                    existed: false,
                },
            ],
        };
        let jumps = |family: Family| {
            [
                Operation::InsertJump {
                    family,
                    hook: Hook::Input,
                    target: "lj-input".to_string(),
                },
                Operation::InsertJump {
                    family,
                    hook: Hook::DockerUser,
                    target: "lj-docker".to_string(),
                },
            ]
        };
        let mut expected = vec![
            Operation::CreateSet {
                set: "lj-s-web-4".to_string(),
                family: V4,
                room: 1,
            },
            Operation::FillSet {
                set: "lj-s-web-4".to_string(),
                entries: vec![("198.51.100.7".parse().unwrap(), 0)],
                missing: None,
            },
            Operation::CreateSet {
                set: "lj-s-web-6".to_string(),
                family: V6,
                room: 0,
            },
        ];
        for (family, tag) in [(V4, "4"), (V6, "6")] {
            expected.push(Operation::CreateDockerUser { family });
            expected.push(Operation::InsertDockerUserJump { family });
            expected.push(chains(family, tag));
            expected.extend(jumps(family));
        }
        assert_eq!(operations, expected);
        let report = report(&operations);
        assert!(report.removed.is_empty());
        assert_eq!(report.repaired[..2], ["set lj-s-web-4", "set lj-s-web-6"]);
        assert!(
            report
                .repaired
                .contains(&"IPv6 chain DOCKER-USER (Docker has not made it)".to_string())
        );
        assert!(
            report
                .repaired
                .contains(&"IPv4 jump INPUT -> lj-input".to_string())
        );
        assert!(
            report
                .repaired
                .contains(&"IPv4 chain lj-j-web-d".to_string())
        );
    }

    #[test]
    fn nothing_to_do_when_the_layout_is_in_place() {
        let rule = web();
        let held = bans(&[("198.51.100.7", Some(1_700_000_600)), ("2001:db8::9", None)]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(1, 1),
            ),
        );
        assert_eq!(operations, []);
        // Sets that hold more than logjail knows (timed-out entries the kernel has not
        // collected yet) are fine too.
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(5, 3),
            ),
        );
        assert_eq!(operations, []);
    }

    #[test]
    fn after_a_docker_restart_only_our_jump_is_put_back() {
        // Docker re-created DOCKER-USER (just its RETURN) and put its jump back in FORWARD;
        // our chains and sets survived.
        let rule = web();
        let held = Bans::new();
        let v4 = without(in_place_v4(), &["-A DOCKER-USER -j lj-docker"]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(v4, listing(&in_place_v6()), &web_sets(0, 0)),
        );
        assert_eq!(
            operations,
            [Operation::InsertJump {
                family: V4,
                hook: Hook::DockerUser,
                target: "lj-docker".to_string(),
            }]
        );
        assert_eq!(
            report(&operations).repaired,
            ["IPv4 jump DOCKER-USER -> lj-docker"]
        );
    }

    #[test]
    fn a_flushed_docker_user_gets_our_jump_and_nothing_else() {
        // `iptables -F DOCKER-USER`: its RETURN is Docker's to put back (an empty user chain
        // returns all the same); FORWARD still jumps there.
        let rule = web();
        let held = Bans::new();
        let v4 = without(
            in_place_v4(),
            &["-A DOCKER-USER -j lj-docker", "-A DOCKER-USER -j RETURN"],
        );
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(v4, listing(&in_place_v6()), &web_sets(0, 0)),
        );
        assert_eq!(
            operations,
            [Operation::InsertJump {
                family: V4,
                hook: Hook::DockerUser,
                target: "lj-docker".to_string(),
            }]
        );
    }

    #[test]
    fn the_ipv6_jump_to_docker_user_below_dockers_rules_is_raised() {
        // Docker inserted its IPv6 rules at the top of FORWARD when it started.
        let rule = web();
        let held = Bans::new();
        let mut v6 = in_place_v6();
        let at = v6
            .iter()
            .position(|line| *line == "-A FORWARD -j DOCKER-USER")
            .unwrap();
        v6.remove(at);
        v6.insert(at + 1, "-A FORWARD -j DOCKER-USER");
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(listing(&in_place_v4()), listing(&v6), &web_sets(0, 0)),
        );
        assert_eq!(operations, [Operation::RaiseDockerUserJump { family: V6 }]);
        assert_eq!(
            report(&operations).repaired,
            ["IPv6 jump FORWARD -> DOCKER-USER (moved above Docker's rules)"]
        );
        // Without the jump at all, it is inserted at the top.
        let v6 = without(in_place_v6(), &["-A FORWARD -j DOCKER-USER"]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(listing(&in_place_v4()), v6, &web_sets(0, 0)),
        );
        assert_eq!(operations, [Operation::InsertDockerUserJump { family: V6 }]);
    }

    #[test]
    fn leftovers_of_a_removed_jail_go_chains_first_then_sets() {
        // `web` stays; `old` (a host jail) was removed from the configuration.
        let rule = web();
        let held = Bans::new();
        let mut v4 = in_place_v4();
        v4.extend([
            "-N lj-j-old-i",
            "-A lj-input -p tcp -m multiport --dports 22 -j lj-j-old-i",
            "-A lj-j-old-i -m set --match-set lj-s-old-4 src -j DROP",
        ]);
        let mut sets = web_sets(0, 0);
        sets.push(("lj-s-old-4", header("inet", 3)));
        sets.push(("lj-s-old-6", header("inet6", 0)));
        // Not ours: another prefix's set stays.
        sets.push(("other-s-old-4", header("inet", 1)));
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(listing(&v4), listing(&in_place_v6()), &sets),
        );
        assert_eq!(
            operations,
            [
                // The hook chain is rewritten without the jump, in the same transaction
                // that would otherwise leave it pointing at a chain about to go.
                Operation::WriteChains {
                    family: V4,
                    table: FILTER,
                    chains: vec![ChainWrite {
                        chain: "lj-input".to_string(),
                        rules: vec!["-p tcp -m multiport --dports 80 -j lj-j-web-i".to_string()],
                        existed: true,
                    }],
                },
                Operation::FlushChain {
                    family: V4,
                    table: FILTER,
                    chain: "lj-j-old-i".to_string(),
                },
                Operation::DeleteChain {
                    family: V4,
                    table: FILTER,
                    chain: "lj-j-old-i".to_string(),
                },
                Operation::DestroySet {
                    set: "lj-s-old-4".to_string(),
                },
                Operation::DestroySet {
                    set: "lj-s-old-6".to_string(),
                },
            ]
        );
        let report = report(&operations);
        assert_eq!(report.repaired, ["IPv4 rules of lj-input"]);
        assert_eq!(
            report.removed,
            ["IPv4 chain lj-j-old-i", "set lj-s-old-4", "set lj-s-old-6"]
        );
    }

    #[test]
    fn with_no_jail_left_every_chain_of_ours_goes_with_its_jumps() {
        let operations = plan_for(
            ActiveMode::Ipset,
            &[],
            &snapshot(
                listing(&in_place_v4()),
                listing(&["-P INPUT ACCEPT"]),
                &web_sets(0, 0),
            ),
        );
        let mut expected = vec![
            Operation::DeleteRule {
                family: V4,
                table: FILTER,
                chain: "DOCKER-USER".to_string(),
                rule: "-j lj-docker".to_string(),
            },
            Operation::DeleteRule {
                family: V4,
                table: FILTER,
                chain: "INPUT".to_string(),
                rule: "-j lj-input".to_string(),
            },
        ];
        let ours = ["lj-docker", "lj-input", "lj-j-web-d", "lj-j-web-i"];
        for chain in ours {
            expected.push(Operation::FlushChain {
                family: V4,
                table: FILTER,
                chain: chain.to_string(),
            });
        }
        for chain in ours {
            expected.push(Operation::DeleteChain {
                family: V4,
                table: FILTER,
                chain: chain.to_string(),
            });
        }
        for set in ["lj-s-web-4", "lj-s-web-6"] {
            expected.push(Operation::DestroySet {
                set: set.to_string(),
            });
        }
        assert_eq!(operations, expected);
        // Shutdown tears down the same, and Docker's chains are never touched.
        let teardown = teardown(&names(), V4, FILTER, &listing(&in_place_v4()));
        assert_eq!(teardown, expected[..10]);
        assert_eq!(
            teardown_sets(
                &names(),
                &web_sets(0, 0)
                    .into_iter()
                    .map(|(n, h)| (n.to_string(), h))
                    .collect()
            ),
            expected[10..]
        );
    }

    #[test]
    fn a_jail_whose_rule_changed_keeps_its_set() {
        // Port 80 -> 8080 and drop -> reject: the chains are rewritten, the sets (holding the
        // jail's bans) are kept as they are.
        let rule = jail(
            "web",
            &[Chain::Input, Chain::DockerUser],
            8080,
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable),
        );
        let held = bans(&[("198.51.100.7", None)]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(1, 0),
            ),
        );
        let write = |family: Family, tag: &str, reject: &str| Operation::WriteChains {
            family,
            table: FILTER,
            chains: [
                (
                    "lj-docker",
                    "-p tcp -m conntrack --ctorigdstport 8080 --ctdir ORIGINAL -j lj-j-web-d"
                        .to_string(),
                ),
                (
                    "lj-input",
                    "-p tcp -m multiport --dports 8080 -j lj-j-web-i".to_string(),
                ),
                (
                    "lj-j-web-d",
                    format!(
                        "-m set --match-set lj-s-web-{tag} src -j REJECT --reject-with {reject}"
                    ),
                ),
                (
                    "lj-j-web-i",
                    format!(
                        "-m set --match-set lj-s-web-{tag} src -j REJECT --reject-with {reject}"
                    ),
                ),
            ]
            .into_iter()
            .map(|(chain, rule)| ChainWrite {
                chain: chain.to_string(),
                rules: vec![rule],
                existed: true,
            })
            .collect(),
        };
        assert_eq!(
            operations,
            [
                write(V4, "4", "icmp-port-unreachable"),
                write(V6, "6", "icmp6-port-unreachable"),
            ]
        );
        // Only the ports changed: the jail chains stay.
        let rule = jail(
            "web",
            &[Chain::Input, Chain::DockerUser],
            8080,
            FirewallAction::Drop,
        );
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(1, 0),
            ),
        );
        let chains: Vec<Vec<&str>> = operations
            .iter()
            .map(|operation| match operation {
                Operation::WriteChains { chains, .. } => {
                    chains.iter().map(|write| write.chain.as_str()).collect()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            chains,
            [["lj-docker", "lj-input"], ["lj-docker", "lj-input"]]
        );
    }

    #[test]
    fn a_set_missing_entries_is_refilled_and_a_foreign_set_is_refused() {
        let rule = web();
        let held = bans(&[
            ("198.51.100.7", Some(1_700_000_090)),
            ("198.51.100.8", None),
            ("2001:db8::9", None),
        ]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(0, 1),
            ),
        );
        let [
            Operation::FillSet {
                set,
                entries,
                missing,
            },
        ] = operations.as_slice()
        else {
            panic!("one refill expected, got {operations:?}");
        };
        assert_eq!(set, "lj-s-web-4");
        assert_eq!(*missing, Some((2, 2)));
        let mut entries = entries.clone();
        entries.sort();
        assert_eq!(
            entries,
            [
                ("198.51.100.7".parse().unwrap(), 90),
                ("198.51.100.8".parse().unwrap(), 0)
            ]
        );
        assert_eq!(
            report(&operations).repaired,
            ["set lj-s-web-4 (2 of 2 entries were missing)"]
        );

        let mut sets = web_sets(0, 1);
        sets[0].1.kind = "hash:net".to_string();
        let error = try_plan(
            Target::Docker,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(listing(&in_place_v4()), listing(&in_place_v6()), &sets),
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("ipset destroy lj-s-web-4"),
            "{error}"
        );
    }

    #[test]
    fn rules_mode_keeps_one_rule_per_ban_and_makes_no_sets() {
        let rule = jail("sshd", &[Chain::Input], 22, FirewallAction::Drop);
        let held = bans(&[
            ("198.51.100.7", Some(1_700_000_600)),
            ("198.51.100.8", None),
        ]);
        let seven = "-s 198.51.100.7/32 -m comment --comment \"logjail-until=1700000600\" -j DROP";
        let eight = "-s 198.51.100.8/32 -m comment --comment \"logjail-until=never\" -j DROP";
        let base = [
            "-P INPUT ACCEPT",
            "-N lj-input",
            "-N lj-j-sshd-i",
            "-A INPUT -j lj-input",
            "-A lj-input -p tcp -m multiport --dports 22 -j lj-j-sshd-i",
        ];
        let with = |bans: &[&str]| {
            let mut lines: Vec<String> = base.iter().map(|line| line.to_string()).collect();
            lines.extend(bans.iter().map(|ban| format!("-A lj-j-sshd-i {ban}")));
            Listing::parse(&lines.join("\n"))
        };
        // No IPv6 ban: the IPv6 jail chain is empty.
        let v6_in_place = listing(&base);
        // An IPv6 side with the hook chain emptied and no jail chain.
        let v6 = listing(&["-P INPUT ACCEPT", "-N lj-input", "-A INPUT -j lj-input"]);
        // Bans appended in another order than the state's are in place all the same.
        let operations = plan_for(
            ActiveMode::Rules,
            &[(&rule, &held)],
            &snapshot(with(&[eight, seven]), v6_in_place.clone(), &[]),
        );
        assert_eq!(operations, []);
        // One ban rule gone (flushed, or deleted by hand): the chain is written whole.
        let operations = plan_for(
            ActiveMode::Rules,
            &[(&rule, &held)],
            &snapshot(with(&[eight]), v6_in_place, &[]),
        );
        assert_eq!(
            operations,
            [Operation::WriteChains {
                family: V4,
                table: FILTER,
                chains: vec![ChainWrite {
                    chain: "lj-j-sshd-i".to_string(),
                    rules: vec![seven.to_string(), eight.to_string()],
                    existed: true,
                }],
            }]
        );
        // The IPv6 side had no jail chain: it is made, empty, with no set anywhere.
        let operations = plan_for(
            ActiveMode::Rules,
            &[(&rule, &held)],
            &snapshot(with(&[seven, eight]), v6, &[]),
        );
        assert_eq!(
            operations,
            [Operation::WriteChains {
                family: V6,
                table: FILTER,
                chains: vec![
                    ChainWrite {
                        chain: "lj-input".to_string(),
                        rules: vec!["-p tcp -m multiport --dports 22 -j lj-j-sshd-i".to_string()],
                        existed: true,
                    },
                    ChainWrite {
                        chain: "lj-j-sshd-i".to_string(),
                        rules: Vec::new(),
                        existed: false,
                    },
                ],
            }]
        );
    }

    #[test]
    fn duplicate_jumps_are_removed_and_log_only_jails_need_nothing() {
        let rule = web();
        let held = Bans::new();
        let mut v4 = in_place_v4();
        v4.push("-A INPUT -j lj-input");
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(listing(&v4), listing(&in_place_v6()), &web_sets(0, 0)),
        );
        assert_eq!(
            operations,
            [Operation::DeleteDuplicateJump {
                family: V4,
                hook: Hook::Input,
                target: "lj-input".to_string(),
            }]
        );
        assert_eq!(
            report(&operations).removed,
            ["IPv4 duplicate jump INPUT -> lj-input"]
        );
        let quiet = jail("quiet", &[Chain::Input], 22, FirewallAction::Log);
        let bare = listing(&["-P INPUT ACCEPT"]);
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&quiet, &held)],
            &snapshot(bare.clone(), bare, &[]),
        );
        assert_eq!(operations, []);
    }

    /// A k3s node: kube-proxy's and flannel's chains in filter, someone's `NOTRACK` in raw.
    fn node_filter() -> Vec<&'static str> {
        vec![
            "-P INPUT ACCEPT",
            "-P FORWARD ACCEPT",
            "-P OUTPUT ACCEPT",
            "-N KUBE-FIREWALL",
            "-N KUBE-FORWARD",
            "-A INPUT -j KUBE-FIREWALL",
            "-A FORWARD -j KUBE-FORWARD",
        ]
    }

    fn node_raw() -> Vec<&'static str> {
        vec![
            "-P PREROUTING ACCEPT",
            "-P OUTPUT ACCEPT",
            "-A PREROUTING -p udp -m udp --dport 8472 -j CT --notrack",
        ]
    }

    /// `web` (INPUT and `docker-user`, port 80) fully in place on a Kubernetes node.
    fn node_in_place_filter(tag: &'static str) -> Vec<String> {
        let mut lines: Vec<String> = node_filter().into_iter().map(str::to_string).collect();
        lines.extend([
            "-N lj-input".to_string(),
            "-N lj-j-web-i".to_string(),
            "-A INPUT -j lj-input".to_string(),
            "-A lj-input -p tcp -m multiport --dports 80 -j lj-j-web-i".to_string(),
            format!("-A lj-j-web-i -m set --match-set lj-s-web-{tag} src -j DROP"),
        ]);
        lines
    }

    fn node_in_place_raw(tag: &'static str) -> Vec<String> {
        let mut lines: Vec<String> = node_raw().into_iter().map(str::to_string).collect();
        lines.splice(
            2..2,
            [
                "-N lj-raw".to_string(),
                "-N lj-j-web-r".to_string(),
                "-A PREROUTING -j lj-raw".to_string(),
            ],
        );
        lines.extend([
            "-A lj-raw -p tcp -m multiport --dports 80 -j lj-j-web-r".to_string(),
            format!("-A lj-j-web-r -m set --match-set lj-s-web-{tag} src -j DROP"),
        ]);
        lines
    }

    /// Filter and raw listings of both families.
    fn node_snapshot(
        filter: [Listing; 2],
        raw: [Listing; 2],
        sets: &[(&str, SetHeader)],
    ) -> Snapshot {
        let [filter4, filter6] = filter;
        let [raw4, raw6] = raw;
        Snapshot {
            listings: [
                ((V4, FILTER), filter4),
                ((V6, FILTER), filter6),
                ((V4, RAW), raw4),
                ((V6, RAW), raw6),
            ]
            .into_iter()
            .collect(),
            sets: sets
                .iter()
                .map(|(name, header)| ((*name).to_string(), header.clone()))
                .collect(),
        }
    }

    fn strings(lines: &[String]) -> Listing {
        listing(&lines.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn node_in_place() -> Snapshot {
        node_snapshot(
            [
                strings(&node_in_place_filter("4")),
                strings(&node_in_place_filter("6")),
            ],
            [
                strings(&node_in_place_raw("4")),
                strings(&node_in_place_raw("6")),
            ],
            &web_sets(0, 0),
        )
    }

    #[test]
    fn on_a_kubernetes_node_container_bans_go_to_raw_prerouting_and_host_bans_to_input() {
        let rule = web();
        let held = bans(&[("2001:db8::9", None)]);
        let bare = node_snapshot(
            [listing(&node_filter()), listing(&node_filter())],
            [listing(&node_raw()), listing(&node_raw())],
            &[],
        );
        let operations = plan_on(
            Target::Kubernetes,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &bare,
        );
        let write = |chain: &str, rule: String| ChainWrite {
            chain: chain.to_string(),
            rules: vec![rule],
            existed: false,
        };
        let mut expected = vec![
            Operation::CreateSet {
                set: "lj-s-web-4".to_string(),
                family: V4,
                room: 0,
            },
            Operation::CreateSet {
                set: "lj-s-web-6".to_string(),
                family: V6,
                room: 1,
            },
            Operation::FillSet {
                set: "lj-s-web-6".to_string(),
                entries: vec![("2001:db8::9".parse().unwrap(), 0)],
                missing: None,
            },
        ];
        for (family, tag) in [(V4, "4"), (V6, "6")] {
            let matched = format!("-m set --match-set lj-s-web-{tag} src -j DROP");
            // No DOCKER-USER anywhere: Kubernetes has none, and nothing would pass it.
            expected.extend([
                Operation::WriteChains {
                    family,
                    table: FILTER,
                    chains: vec![
                        write(
                            "lj-input",
                            "-p tcp -m multiport --dports 80 -j lj-j-web-i".to_string(),
                        ),
                        write("lj-j-web-i", matched.clone()),
                    ],
                },
                Operation::InsertJump {
                    family,
                    hook: Hook::Input,
                    target: "lj-input".to_string(),
                },
                Operation::WriteChains {
                    family,
                    table: RAW,
                    chains: vec![
                        write("lj-j-web-r", matched),
                        // The port the client used: raw runs before any DNAT.
                        write(
                            "lj-raw",
                            "-p tcp -m multiport --dports 80 -j lj-j-web-r".to_string(),
                        ),
                    ],
                },
                Operation::InsertJump {
                    family,
                    hook: Hook::RawPrerouting,
                    target: "lj-raw".to_string(),
                },
            ]);
        }
        assert_eq!(operations, expected);
        let report = report(&operations);
        assert!(
            report
                .repaired
                .contains(&"IPv6 jump raw PREROUTING -> lj-raw".to_string()),
            "{report:?}"
        );
        assert!(
            report
                .repaired
                .contains(&"IPv4 raw chain lj-j-web-r".to_string()),
            "{report:?}"
        );
        assert!(report.removed.is_empty());
        // The same jail on a Docker host or a host without a runtime bans in DOCKER-USER and
        // leaves the raw table alone.
        for target in [Target::Docker, Target::Host] {
            let operations = plan_on(target, ActiveMode::Ipset, &[(&rule, &held)], &bare);
            assert!(
                operations.contains(&Operation::CreateDockerUser { family: V4 }),
                "{target}: {operations:?}"
            );
            assert!(
                operations.iter().all(|operation| !matches!(
                    operation,
                    Operation::WriteChains { table: RAW, .. }
                        | Operation::InsertJump {
                            hook: Hook::RawPrerouting,
                            ..
                        }
                )),
                "{target}: {operations:?}"
            );
        }
    }

    #[test]
    fn a_raw_layout_in_place_beside_others_rules_needs_nothing_and_a_lost_jump_goes_first() {
        let rule = web();
        let held = Bans::new();
        assert_eq!(
            plan_on(
                Target::Kubernetes,
                ActiveMode::Ipset,
                &[(&rule, &held)],
                &node_in_place()
            ),
            []
        );
        // Another tool put its own rule above our jump: tolerated, nothing moves.
        let mut raw4 = node_in_place_raw("4");
        raw4.insert(3, "-A PREROUTING -i cni0 -j ACCEPT".to_string());
        let mut snapshot = node_in_place();
        snapshot.listings.insert((V4, RAW), strings(&raw4));
        assert_eq!(
            plan_on(
                Target::Kubernetes,
                ActiveMode::Ipset,
                &[(&rule, &held)],
                &snapshot
            ),
            []
        );
        // Our jump deleted (by hand, by a script): inserted again at the top.
        let raw4: Vec<String> = node_in_place_raw("4")
            .into_iter()
            .filter(|line| line != "-A PREROUTING -j lj-raw")
            .collect();
        snapshot.listings.insert((V4, RAW), strings(&raw4));
        let operations = plan_on(
            Target::Kubernetes,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot,
        );
        assert_eq!(
            operations,
            [Operation::InsertJump {
                family: V4,
                hook: Hook::RawPrerouting,
                target: "lj-raw".to_string(),
            }]
        );
        // Twice (two runs racing after a crash): one goes.
        let mut raw6 = node_in_place_raw("6");
        raw6.insert(3, "-A PREROUTING -j lj-raw".to_string());
        let mut snapshot = node_in_place();
        snapshot.listings.insert((V6, RAW), strings(&raw6));
        let operations = plan_on(
            Target::Kubernetes,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot,
        );
        assert_eq!(
            operations,
            [Operation::DeleteDuplicateJump {
                family: V6,
                hook: Hook::RawPrerouting,
                target: "lj-raw".to_string(),
            }]
        );
        assert_eq!(
            report(&operations).removed,
            ["IPv6 duplicate jump raw PREROUTING -> lj-raw"]
        );
    }

    #[test]
    fn a_flushed_raw_table_is_rewritten_with_its_bans_in_rules_mode() {
        // Rules mode: the jail chain holds one DROP per banned address, even for a jail that
        // rejects (there is no REJECT in raw); INPUT keeps the reject.
        let rule = jail(
            "web",
            &[Chain::Input, Chain::DockerUser],
            80,
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable),
        );
        let held = bans(&[("198.51.100.7", None)]);
        let filter4 = listing(&[
            "-P INPUT ACCEPT",
            "-N lj-input",
            "-N lj-j-web-i",
            "-A INPUT -j lj-input",
            "-A lj-input -p tcp -m multiport --dports 80 -j lj-j-web-i",
            "-A lj-j-web-i -s 198.51.100.7/32 -m comment --comment \"logjail-until=never\" -j REJECT --reject-with icmp-port-unreachable",
        ]);
        let filter6 = listing(&[
            "-P INPUT ACCEPT",
            "-N lj-input",
            "-N lj-j-web-i",
            "-A INPUT -j lj-input",
            "-A lj-input -p tcp -m multiport --dports 80 -j lj-j-web-i",
        ]);
        // `iptables -t raw -F; -X`: only the builtin chains are left.
        let flushed = listing(&["-P PREROUTING ACCEPT", "-P OUTPUT ACCEPT"]);
        let snapshot = node_snapshot([filter4, filter6], [flushed.clone(), flushed], &[]);
        let operations = plan_on(
            Target::Kubernetes,
            ActiveMode::Rules,
            &[(&rule, &held)],
            &snapshot,
        );
        let raw = |family: Family, bans: Vec<String>| {
            [
                Operation::WriteChains {
                    family,
                    table: RAW,
                    chains: vec![
                        ChainWrite {
                            chain: "lj-j-web-r".to_string(),
                            rules: bans,
                            existed: false,
                        },
                        ChainWrite {
                            chain: "lj-raw".to_string(),
                            rules: vec![
                                "-p tcp -m multiport --dports 80 -j lj-j-web-r".to_string(),
                            ],
                            existed: false,
                        },
                    ],
                },
                Operation::InsertJump {
                    family,
                    hook: Hook::RawPrerouting,
                    target: "lj-raw".to_string(),
                },
            ]
        };
        let mut expected = raw(
            V4,
            vec![
                "-s 198.51.100.7/32 -m comment --comment \"logjail-until=never\" -j DROP"
                    .to_string(),
            ],
        )
        .to_vec();
        expected.extend(raw(V6, Vec::new()));
        assert_eq!(operations, expected);
    }

    #[test]
    fn leftovers_in_the_raw_table_go_after_a_crash_and_a_change_of_target() {
        // A run on target kubernetes was killed; this one runs on target docker with the same
        // jail: the raw side goes (jumps first, then rules, then chains), sets stay, and
        // DOCKER-USER is made.
        let rule = web();
        let held = Bans::new();
        let filter = |tag| -> Listing {
            let lines: Vec<String> = node_in_place_filter(tag)
                .into_iter()
                .filter(|line| !line.contains("KUBE-"))
                .collect();
            strings(&lines)
        };
        let snapshot = node_snapshot(
            [filter("4"), filter("6")],
            [
                strings(&node_in_place_raw("4")),
                strings(&node_in_place_raw("6")),
            ],
            &web_sets(0, 0),
        );
        let operations = plan_on(
            Target::Docker,
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot,
        );
        let raw_leftovers = |family: Family| {
            vec![
                Operation::DeleteRule {
                    family,
                    table: RAW,
                    chain: "PREROUTING".to_string(),
                    rule: "-j lj-raw".to_string(),
                },
                Operation::FlushChain {
                    family,
                    table: RAW,
                    chain: "lj-j-web-r".to_string(),
                },
                Operation::FlushChain {
                    family,
                    table: RAW,
                    chain: "lj-raw".to_string(),
                },
                Operation::DeleteChain {
                    family,
                    table: RAW,
                    chain: "lj-j-web-r".to_string(),
                },
                Operation::DeleteChain {
                    family,
                    table: RAW,
                    chain: "lj-raw".to_string(),
                },
            ]
        };
        for family in [V4, V6] {
            let of_family: Vec<&Operation> = operations
                .iter()
                .filter(|operation| {
                    matches!(operation,
                        Operation::DeleteRule { family: f, table: RAW, .. }
                        | Operation::FlushChain { family: f, table: RAW, .. }
                        | Operation::DeleteChain { family: f, table: RAW, .. } if *f == family)
                })
                .collect();
            assert_eq!(
                of_family,
                raw_leftovers(family).iter().collect::<Vec<_>>(),
                "{operations:?}"
            );
            assert!(
                operations.contains(&Operation::CreateDockerUser { family }),
                "{operations:?}"
            );
        }
        // Others' rules in raw PREROUTING are never touched.
        assert!(operations.iter().all(|operation| !matches!(
            operation,
            Operation::DeleteRule { rule, .. } if rule.contains("notrack")
        )));
        assert!(
            operations
                .iter()
                .all(|operation| !matches!(operation, Operation::DestroySet { .. }))
        );
        assert!(
            report(&operations)
                .removed
                .contains(&"IPv4 raw chain lj-raw".to_string())
        );
    }

    #[test]
    fn a_clean_stop_tears_down_the_raw_table_too_and_leaves_others_rules() {
        let teardown = teardown(&names(), V6, RAW, &strings(&node_in_place_raw("6")));
        let mut expected = vec![Operation::DeleteRule {
            family: V6,
            table: RAW,
            chain: "PREROUTING".to_string(),
            rule: "-j lj-raw".to_string(),
        }];
        for chain in ["lj-j-web-r", "lj-raw"] {
            expected.push(Operation::FlushChain {
                family: V6,
                table: RAW,
                chain: chain.to_string(),
            });
        }
        for chain in ["lj-j-web-r", "lj-raw"] {
            expected.push(Operation::DeleteChain {
                family: V6,
                table: RAW,
                chain: chain.to_string(),
            });
        }
        assert_eq!(teardown, expected);
        // Nothing of ours in raw (a Docker host): nothing to do there.
        assert_eq!(teardown_for_raw(&node_raw()), []);
    }

    fn teardown_for_raw(lines: &[&str]) -> Vec<Operation> {
        teardown(&names(), V4, RAW, &listing(lines))
    }

    #[test]
    fn a_host_without_a_raw_table_is_fine_until_a_jail_needs_it() {
        // The snapshot could not list raw (a kernel without iptable_raw): no jail needs it on
        // target docker, so the plan is the plain one.
        let rule = web();
        let held = Bans::new();
        let operations = plan_for(
            ActiveMode::Ipset,
            &[(&rule, &held)],
            &snapshot(
                listing(&in_place_v4()),
                listing(&in_place_v6()),
                &web_sets(0, 0),
            ),
        );
        assert_eq!(operations, []);
        let names = names();
        let rules = [rule.clone()];
        assert!(!uses_table(&rules, Target::Docker, RAW));
        assert!(uses_table(&rules, Target::Kubernetes, RAW));
        assert!(uses_table(&rules, Target::Docker, FILTER));
        // A log-only jail needs no table at all.
        let quiet = [jail("q", &[Chain::Prerouting], 22, FirewallAction::Log)];
        assert!(!uses_table(&quiet, Target::Kubernetes, RAW));
        assert_eq!(names.hook_chain(Hook::RawPrerouting), "lj-raw");
    }

    #[test]
    fn listings_parse_into_chains_and_rules() {
        let parsed = listing(&in_place_v4());
        assert!(parsed.chains.contains("INPUT"));
        assert!(parsed.chains.contains("lj-j-web-i"));
        assert_eq!(
            parsed.rules_of("FORWARD"),
            [
                "-j DOCKER-USER",
                "-j DOCKER-ISOLATION-STAGE-1",
                "-o docker0 -j DOCKER"
            ]
        );
        assert_eq!(parsed.rules_of("DOCKER"), [] as [String; 0]);
    }

    #[test]
    fn remaining_seconds_round_up() {
        let now = now();
        assert_eq!(remaining(None, now), None);
        assert_eq!(remaining(Some(now), now), Some(0));
        assert_eq!(
            remaining(Some(now + chrono::Duration::milliseconds(1500)), now),
            Some(2)
        );
    }
}
