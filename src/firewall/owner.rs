//! The firewall thread: the only code that changes iptables and ipset, and the state it
//! keeps so that it can always rebuild what should be there.
//!
//! Everything kernel-side is derived from `jails` (rules and bans) by [`Owner::ensure`]:
//! start-up, repairs after a flush, run-time jails and removals all go through it. Single
//! bans and unbans take the fast path (one `ipset` or `iptables` call) and fall back to
//! `ensure` when the kernel side turns out to be missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use iptables::IPTables;
use tokio::sync::{mpsc, oneshot};

use super::backend::{self, BackendChoice};
use super::ipset::{self, Batch};
use super::names::{Family, Hook, Names};
use super::rules;
use super::safety::{self, OwnAddress};
use super::{
    ActiveMode, BanOutcome, BanRequest, BatchOutcome, Command, FirewallBan, FirewallError,
    FirewallOptions, FirewallStatus, HookStatus, JailFirewallStatus, JailRule, LayoutReport,
    SetStatus,
};
use crate::clock::SharedClock;
use crate::config::{FirewallConfig, FirewallMode};

const TABLE: &str = "filter";
/// How long a reading of the host's addresses is trusted before a ban reads them again.
const OWN_ADDRESSES_FRESH: Duration = Duration::from_secs(1);
/// Per-address rules cost more with every ban (each delete lists the chain); past this many
/// bans in one jail the log suggests ipset mode.
const RULES_MODE_ADVICE: usize = 5_000;
/// Above this many expired rules, a jail chain is rebuilt in one restore instead of deleting
/// rules one by one (each delete costs 15-35 ms with iptables-nft).
const REBUILD_THRESHOLD: usize = 32;

struct JailState {
    rule: JailRule,
    bans: HashMap<IpAddr, Option<DateTime<Utc>>>,
    /// Whether the log already suggested ipset mode for this jail's size.
    advised: bool,
}

impl JailState {
    fn acts(&self) -> bool {
        self.rule.acts()
    }

    fn hooks(&self) -> BTreeSet<Hook> {
        self.rule
            .chains
            .iter()
            .map(|chain| Hook::from(*chain))
            .collect()
    }

    fn count(&self, family: Family) -> usize {
        self.bans
            .keys()
            .filter(|host| Family::of(host) == family)
            .count()
    }
}

/// One family's iptables as listed by `iptables -S`.
#[derive(Default)]
struct Snapshot {
    chains: BTreeSet<String>,
    /// Per chain, each rule as listed after `-A CHAIN ` (see [`rules::listing_text`]).
    rules: HashMap<String, Vec<String>>,
}

impl Snapshot {
    fn parse(listing: &str) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for line in listing.lines() {
            if let Some(rest) = line.strip_prefix("-A ") {
                let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
                snapshot
                    .rules
                    .entry(chain.to_string())
                    .or_default()
                    .push(rule.to_string());
            } else if let Some(rest) = line
                .strip_prefix("-N ")
                .or_else(|| line.strip_prefix("-P "))
            {
                let chain = rest.split(' ').next().unwrap_or(rest);
                snapshot.chains.insert(chain.to_string());
            }
        }
        snapshot
    }

    fn rules_of(&self, chain: &str) -> &[String] {
        self.rules.get(chain).map(Vec::as_slice).unwrap_or(&[])
    }
}

pub(super) struct Owner {
    choice: BackendChoice,
    mode: ActiveMode,
    /// Why `mode`: configured, or what `auto` found (for `status`).
    mode_reason: String,
    names: Names,
    clock: SharedClock,
    fixed_own: Option<Vec<OwnAddress>>,
    /// When `own` was last read from the kernel (Docker adds bridges at any time).
    own_read: Instant,
    own: Vec<OwnAddress>,
    families: Vec<Family>,
    tables: [IPTables; 2],
    jails: BTreeMap<String, JailState>,
    /// A running `ipset -` for single bans and unbans (ipset mode).
    session: Option<ipset::Session>,
    /// Set once a session could not be started: every command spawns `ipset` then.
    session_unavailable: bool,
}

pub(super) fn run(
    config: FirewallConfig,
    jails: Vec<JailRule>,
    options: FirewallOptions,
    mut receiver: mpsc::Receiver<Command>,
    started: oneshot::Sender<Result<(), FirewallError>>,
) {
    let mut owner = match Owner::start(config, jails, options) {
        Ok(owner) => {
            let _ = started.send(Ok(()));
            owner
        }
        Err(error) => {
            let _ = started.send(Err(error));
            return;
        }
    };
    while let Some(command) = receiver.blocking_recv() {
        if owner.handle(command) {
            return;
        }
    }
    tracing::warn!("firewall: every handle was dropped; leaving bans in place");
}

/// Resolves `firewall.mode`. `auto` takes sets when `ipset` works and otherwise one rule per
/// address, warning once, so that a host without the ipset package still enforces bans; an
/// explicit `ipset` is a promise of set performance and fails instead.
fn resolve_mode(configured: FirewallMode) -> Result<(ActiveMode, String), FirewallError> {
    match configured {
        FirewallMode::Rules => Ok((
            ActiveMode::Rules,
            "configured (firewall.mode: rules)".to_string(),
        )),
        FirewallMode::Ipset => match ipset::list_headers() {
            Ok(_) => Ok((
                ActiveMode::Ipset,
                "configured (firewall.mode: ipset)".to_string(),
            )),
            Err(error) => Err(FirewallError::Backend(format!(
                "firewall.mode is ipset but ipset does not work ({error}); {}, or set \
                 firewall.mode: auto (or rules) to use one rule per banned address",
                ipset_remedy()
            ))),
        },
        FirewallMode::Auto => match ipset::list_headers() {
            Ok(_) => Ok((ActiveMode::Ipset, "auto: ipset works".to_string())),
            Err(error) => {
                let remedy = ipset_remedy();
                tracing::warn!(
                    %error,
                    "firewall: ipset does not work here, so each ban is one iptables rule \
                     (firewall.mode: auto falls back to rules). Fine for a few thousand bans; \
                     beyond, every unban and layout check lists the whole chain (0.1-0.2 s per \
                     unban at 10,000 bans, seconds at 100,000, where a set takes 0.1 ms). To \
                     get sets back: {remedy}"
                );
                Ok((
                    ActiveMode::Rules,
                    format!("auto: ipset does not work here; {remedy}"),
                ))
            }
        },
    }
}

/// What to do about a failing ipset: install it, or (when it is installed) find out why.
fn ipset_remedy() -> &'static str {
    if backend::on_path("ipset") {
        "ipset is installed but fails: check that the kernel has the ip_set module, then \
         restart logjail"
    } else {
        "install ipset (apt-get install ipset) and restart logjail"
    }
}

fn jail_error(jail: &str, message: impl Into<String>) -> FirewallError {
    FirewallError::Jail {
        jail: jail.to_string(),
        message: message.into(),
    }
}

impl Owner {
    fn start(
        config: FirewallConfig,
        jails: Vec<JailRule>,
        options: FirewallOptions,
    ) -> Result<Owner, FirewallError> {
        let choice = backend::choose(config.backend)?;
        let v4 = choice.iptables(Family::V4);
        if !backend::on_path(v4) {
            return Err(FirewallError::Backend(format!(
                "{v4} is not installed (not found on PATH); install it: apt-get install iptables"
            )));
        }
        let tables = [
            backend::iptables_handle(&choice, Family::V4),
            backend::iptables_handle(&choice, Family::V6),
        ];
        let mut families = Vec::new();
        for family in Family::ALL {
            match backend::run(choice.iptables(family), &["-w", "-t", TABLE, "-S"], None) {
                Ok(_) => families.push(family),
                Err(error) if family == Family::V6 => {
                    tracing::warn!(%error, "firewall: ip6tables does not work here; IPv6 bans are refused");
                }
                Err(error) => return Err(error),
            }
        }
        let (mode, mode_reason) = resolve_mode(config.mode)?;
        tracing::info!(
            backend = %choice.backend,
            reason = %choice.reason,
            mode = %mode,
            mode_reason = %mode_reason,
            prefix = %config.chain_prefix,
            "firewall: using iptables-{}", choice.backend
        );
        let own = options
            .own_addresses
            .clone()
            .unwrap_or_else(safety::system_addresses);
        let mut owner = Owner {
            choice,
            mode,
            mode_reason,
            names: Names::new(&config.chain_prefix),
            clock: options.clock,
            fixed_own: options.own_addresses,
            own_read: Instant::now(),
            own,
            families,
            tables,
            jails: BTreeMap::new(),
            session: None,
            session_unavailable: false,
        };
        for rule in jails {
            owner.check_names(&rule)?;
            owner.jails.insert(
                rule.name.clone(),
                JailState {
                    rule,
                    bans: HashMap::new(),
                    advised: false,
                },
            );
        }
        let report = owner.ensure(true)?;
        log_report("start", &report);
        Ok(owner)
    }

    /// Carries out one command; `true` after a shutdown, when the thread ends.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Ban(request, reply) => {
                let _ = reply.send(self.ban(request));
            }
            Command::BanMany(requests, reply) => {
                let _ = reply.send(self.ban_many(requests));
            }
            Command::Unban(jail, host, reply) => {
                let _ = reply.send(self.unban(&jail, host));
            }
            Command::UnbanAll(jail, reply) => {
                let _ = reply.send(self.unban_all(&jail));
            }
            Command::EnsureLayout(reply) => {
                let result = self.ensure(false);
                if let Ok(report) = &result {
                    log_report("layout check", report);
                }
                let _ = reply.send(result);
            }
            Command::DefineJail(rule, reply) => {
                let _ = reply.send(self.define_jail(rule));
            }
            Command::RemoveJail(jail, reply) => {
                let _ = reply.send(self.remove_jail(&jail));
            }
            Command::Bans(jail, reply) => {
                let _ = reply.send(self.bans(&jail));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown(keep_bans, reply) => {
                // The thread ends as asked even when clean-up failed; the caller learns why.
                let _ = reply.send(self.shutdown(keep_bans));
                return true;
            }
        }
        false
    }

    fn table(&self, family: Family) -> &IPTables {
        match family {
            Family::V4 => &self.tables[0],
            Family::V6 => &self.tables[1],
        }
    }

    fn ipt_error(&self, family: Family, error: &dyn std::error::Error) -> FirewallError {
        FirewallError::Iptables {
            program: self.choice.iptables(family).to_string(),
            message: backend::clean_stderr(error.to_string().as_bytes()),
        }
    }

    fn check_names(&self, rule: &JailRule) -> Result<(), FirewallError> {
        if rule.name.is_empty() {
            return Err(jail_error("", "a jail needs a name"));
        }
        let mine: Vec<String> = self.object_names(&rule.name);
        for other in self.jails.keys().filter(|other| **other != rule.name) {
            let theirs = self.object_names(other);
            if let Some(clash) = mine.iter().find(|name| theirs.contains(name)) {
                return Err(jail_error(
                    &rule.name,
                    format!(
                        "its firewall name {clash} clashes with jail \"{other}\"; rename one of them"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn object_names(&self, jail: &str) -> Vec<String> {
        let mut names: Vec<String> = Hook::ALL
            .iter()
            .map(|hook| self.names.jail_chain(jail, *hook))
            .collect();
        names.extend(
            Family::ALL
                .iter()
                .map(|family| self.names.jail_set(jail, *family)),
        );
        names
    }

    fn jail(&self, jail: &str) -> Result<&JailState, FirewallError> {
        self.jails
            .get(jail)
            .ok_or_else(|| FirewallError::UnknownJail {
                jail: jail.to_string(),
            })
    }

    fn family_ready(&self, family: Family) -> Result<(), FirewallError> {
        if self.families.contains(&family) {
            Ok(())
        } else {
            Err(FirewallError::FamilyUnavailable {
                family: family.label(),
                message: format!(
                    "{} does not work on this host",
                    self.choice.iptables(family)
                ),
            })
        }
    }

    /// Seconds until `end`, rounded up; `None` for a permanent ban, `Some(0)` when passed.
    fn remaining(&self, end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<u64> {
        end.map(|end| {
            let millis = (end - now).num_milliseconds();
            if millis <= 0 {
                0
            } else {
                u64::try_from(millis).unwrap_or(u64::MAX).div_ceil(1000)
            }
        })
    }

    /// Reads the host's addresses again (`force`), or when the copy is over a second old: a
    /// netlink dump, cheap next to a ban, and a new Docker bridge is protected at once.
    fn refresh_own(&mut self, force: bool) {
        if self.fixed_own.is_none() && (force || self.own_read.elapsed() > OWN_ADDRESSES_FRESH) {
            self.own = safety::system_addresses();
            self.own_read = Instant::now();
        }
    }

    /// Checks one request; `Ok(None)` when its end has passed.
    fn admit(
        &self,
        request: &BanRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<(IpAddr, Option<u64>)>, FirewallError> {
        let jail = self.jail(&request.jail)?;
        let host = safety::canonical(request.host);
        if let Some(reason) = safety::refusal(host, &jail.rule.ignoreip, &self.own) {
            return Err(FirewallError::Refused {
                jail: request.jail.clone(),
                host,
                reason,
            });
        }
        let remaining = self.remaining(request.end, now);
        if remaining == Some(0) {
            return Ok(None);
        }
        if jail.acts() {
            self.family_ready(Family::of(&host))?;
        }
        Ok(Some((host, remaining)))
    }

    fn advise_on_size(&mut self) {
        if self.mode != ActiveMode::Rules {
            return;
        }
        for (name, jail) in &mut self.jails {
            if !jail.advised && jail.bans.len() > RULES_MODE_ADVICE {
                jail.advised = true;
                tracing::warn!(
                    jail = %name,
                    bans = jail.bans.len(),
                    "firewall: many bans in rules mode; each unban and layout check now lists \
                     the whole chain (seconds at 100,000 bans): install ipset (apt-get install \
                     ipset) and restart logjail with firewall.mode auto or ipset"
                );
            }
        }
    }

    fn ban(&mut self, request: BanRequest) -> Result<BanOutcome, FirewallError> {
        self.refresh_own(false);
        let now = self.clock.now();
        let Some((host, remaining)) = self.admit(&request, now)? else {
            return Ok(BanOutcome::AlreadyEnded);
        };
        let jail_name = request.jail.clone();
        let (acts, previous) = {
            let jail = self.jail(&jail_name)?;
            (jail.acts(), jail.bans.get(&host).copied())
        };
        if let Some(jail) = self.jails.get_mut(&jail_name) {
            jail.bans.insert(host, request.end);
        }
        self.advise_on_size();
        let outcome = if previous.is_some() {
            BanOutcome::Refreshed
        } else {
            BanOutcome::Banned
        };
        if !acts {
            tracing::info!(jail = %jail_name, %host, "firewall: log-only jail, nothing blocked");
            return Ok(BanOutcome::LogOnly);
        }
        let applied = match self.mode {
            ActiveMode::Ipset => {
                let set = self.names.jail_set(&jail_name, Family::of(&host));
                let timeout = ipset::timeout_for(remaining).to_string();
                self.ipset_command(&[
                    "add",
                    "-exist",
                    &set,
                    &host.to_string(),
                    "timeout",
                    &timeout,
                ])
            }
            ActiveMode::Rules => {
                if previous == Some(request.end) {
                    Ok(())
                } else {
                    self.replace_ban_rules(&jail_name, host, previous, request.end)
                }
            }
        };
        if let Err(error) = applied {
            // The chain or set may have been removed behind our back: rebuild everything from
            // the state, which already holds this ban.
            tracing::warn!(jail = %jail_name, %host, %error, "firewall: ban failed, repairing the layout");
            let report = self.ensure(false)?;
            log_report("repair", &report);
        }
        Ok(outcome)
    }

    /// One ipset command through the running session, or a process of its own when no
    /// session works.
    fn ipset_command(&mut self, args: &[&str]) -> Result<(), FirewallError> {
        if self.session.is_none() && !self.session_unavailable {
            match ipset::Session::start() {
                Ok(session) => self.session = Some(session),
                Err(reason) => {
                    tracing::warn!(%reason, "firewall: no ipset session; each ban starts ipset (slower)");
                    self.session_unavailable = true;
                }
            }
        }
        if let Some(session) = &mut self.session {
            match session.run(&args.join(" ")) {
                Ok(()) => return Ok(()),
                Err(Ok(error)) => return Err(error),
                Err(Err(reason)) => {
                    // Started again on the next command.
                    tracing::warn!(%reason, "firewall: the ipset session broke");
                    self.session = None;
                }
            }
        }
        backend::run("ipset", args, None).map(drop)
    }

    fn replace_ban_rules(
        &self,
        jail: &str,
        host: IpAddr,
        previous: Option<Option<DateTime<Utc>>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<(), FirewallError> {
        let state = self.jail(jail)?;
        let family = Family::of(&host);
        let table = self.table(family);
        for hook in state.hooks() {
            let chain = self.names.jail_chain(jail, hook);
            let verdicts = rules::verdicts(state.rule.action, hook, family);
            for rule in rules::ban_rules(host, end, &verdicts) {
                table
                    .append(TABLE, &chain, &rule.join(" "))
                    .map_err(|error| self.ipt_error(family, error.as_ref()))?;
            }
            if let Some(old_end) = previous {
                for rule in rules::ban_rules(host, old_end, &verdicts) {
                    // Gone already is fine: the new rules are in place.
                    let _ = table.delete(TABLE, &chain, &rule.join(" "));
                }
            }
        }
        Ok(())
    }

    fn ban_many(&mut self, requests: Vec<BanRequest>) -> Result<BatchOutcome, FirewallError> {
        self.refresh_own(false);
        let now = self.clock.now();
        let mut outcome = BatchOutcome::default();
        let mut batch = Batch::default();
        let mut touched: BTreeSet<(String, Family)> = BTreeSet::new();
        for request in requests {
            let (host, remaining) = match self.admit(&request, now) {
                Ok(Some(admitted)) => admitted,
                Ok(None) => {
                    outcome.ended += 1;
                    continue;
                }
                Err(error) => {
                    let reason = error.to_string();
                    outcome.refused.push((request, reason));
                    continue;
                }
            };
            let Some(jail) = self.jails.get_mut(&request.jail) else {
                continue;
            };
            let previous = jail.bans.insert(host, request.end);
            outcome.applied += 1;
            if !jail.acts() {
                continue;
            }
            match self.mode {
                ActiveMode::Ipset => batch.add(
                    &self.names.jail_set(&request.jail, Family::of(&host)),
                    host,
                    ipset::timeout_for(remaining),
                ),
                ActiveMode::Rules => {
                    if previous != Some(request.end) {
                        touched.insert((request.jail.clone(), Family::of(&host)));
                    }
                }
            }
        }
        self.advise_on_size();
        let applied = match self.mode {
            ActiveMode::Ipset => batch.apply(),
            ActiveMode::Rules => self.rebuild_jail_chains(&touched),
        };
        if let Err(error) = applied {
            tracing::warn!(%error, "firewall: batch failed, repairing the layout");
            let report = self.ensure(false)?;
            log_report("repair", &report);
        }
        Ok(outcome)
    }

    /// Rewrites whole jail chains from the state in one `iptables-restore` per family.
    fn rebuild_jail_chains(
        &self,
        touched: &BTreeSet<(String, Family)>,
    ) -> Result<(), FirewallError> {
        for family in Family::ALL {
            let mut chains = BTreeMap::new();
            for (jail, _) in touched.iter().filter(|(_, f)| *f == family) {
                let state = self.jail(jail)?;
                for hook in state.hooks() {
                    chains.insert(
                        self.names.jail_chain(jail, hook),
                        self.jail_chain_rules(state, hook, family),
                    );
                }
            }
            self.restore(family, &chains)?;
        }
        Ok(())
    }

    fn unban(&mut self, jail_name: &str, host: IpAddr) -> Result<bool, FirewallError> {
        let host = safety::canonical(host);
        let (acts, previous) = {
            let jail = self.jail(jail_name)?;
            (jail.acts(), jail.bans.get(&host).copied())
        };
        let Some(end) = previous else {
            return Ok(false);
        };
        if let Some(jail) = self.jails.get_mut(jail_name) {
            jail.bans.remove(&host);
        }
        if !acts {
            return Ok(true);
        }
        let family = Family::of(&host);
        match self.mode {
            ActiveMode::Ipset => {
                let set = self.names.jail_set(jail_name, family);
                self.ipset_command(&["del", "-exist", &set, &host.to_string()])?;
            }
            ActiveMode::Rules => {
                let state = self.jail(jail_name)?;
                let table = self.table(family);
                for hook in state.hooks() {
                    let chain = self.names.jail_chain(jail_name, hook);
                    let verdicts = rules::verdicts(state.rule.action, hook, family);
                    for rule in rules::ban_rules(host, end, &verdicts) {
                        // Missing already (flushed by someone) is what we want anyway.
                        let _ = table.delete(TABLE, &chain, &rule.join(" "));
                    }
                }
            }
        }
        Ok(true)
    }

    fn unban_all(&mut self, jail_name: &str) -> Result<usize, FirewallError> {
        let count = self.jail(jail_name)?.bans.len();
        if let Some(jail) = self.jails.get_mut(jail_name) {
            jail.bans.clear();
        }
        if !self.jail(jail_name)?.acts() {
            return Ok(count);
        }
        match self.mode {
            ActiveMode::Ipset => {
                for family in self.families.clone() {
                    ipset::flush(&self.names.jail_set(jail_name, family))?;
                }
            }
            ActiveMode::Rules => {
                let touched = self
                    .families
                    .iter()
                    .map(|family| (jail_name.to_string(), *family))
                    .collect();
                self.rebuild_jail_chains(&touched)?;
            }
        }
        Ok(count)
    }

    fn define_jail(&mut self, rule: JailRule) -> Result<(), FirewallError> {
        self.check_names(&rule)?;
        match self.jails.get_mut(&rule.name) {
            Some(existing) if existing.rule == rule => return Ok(()),
            Some(existing) => existing.rule = rule,
            None => {
                self.jails.insert(
                    rule.name.clone(),
                    JailState {
                        rule,
                        bans: HashMap::new(),
                        advised: false,
                    },
                );
            }
        }
        let report = self.ensure(false)?;
        log_report("jail defined", &report);
        Ok(())
    }

    fn remove_jail(&mut self, jail: &str) -> Result<usize, FirewallError> {
        let removed = self
            .jails
            .remove(jail)
            .ok_or_else(|| FirewallError::UnknownJail {
                jail: jail.to_string(),
            })?;
        let report = self.ensure(false)?;
        log_report("jail removed", &report);
        Ok(removed.bans.len())
    }

    fn bans(&mut self, jail: &str) -> Result<Vec<FirewallBan>, FirewallError> {
        self.sweep(self.clock.now())?;
        let mut bans: Vec<FirewallBan> = self
            .jail(jail)?
            .bans
            .iter()
            .map(|(host, end)| FirewallBan {
                host: *host,
                end: *end,
            })
            .collect();
        bans.sort_by_key(|ban| ban.host);
        Ok(bans)
    }

    fn status(&mut self) -> Result<FirewallStatus, FirewallError> {
        self.sweep(self.clock.now())?;
        let headers = match self.mode {
            ActiveMode::Ipset => ipset::list_headers()?,
            ActiveMode::Rules => HashMap::new(),
        };
        let jails = self
            .jails
            .values()
            .map(|jail| {
                let name = &jail.rule.name;
                let hooks = if jail.acts() {
                    jail.hooks()
                        .into_iter()
                        .map(|hook| HookStatus {
                            hook,
                            chain: self.names.jail_chain(name, hook),
                            verdict: match rules::effective_reject(jail.rule.action, hook) {
                                Some(with) => format!("reject-with {}", with.name()),
                                None => "drop".to_string(),
                            },
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let sets = if self.mode == ActiveMode::Ipset && jail.acts() {
                    self.families
                        .iter()
                        .map(|family| {
                            let set = self.names.jail_set(name, *family);
                            SetStatus {
                                family: *family,
                                kernel_entries: headers.get(&set).map(|header| header.entries),
                                name: set,
                            }
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                JailFirewallStatus {
                    name: name.clone(),
                    action: jail.rule.action,
                    hooks,
                    bans_v4: jail.count(Family::V4),
                    bans_v6: jail.count(Family::V6),
                    sets,
                }
            })
            .collect();
        Ok(FirewallStatus {
            backend: self.choice.backend,
            backend_reason: self.choice.reason.clone(),
            mode: self.mode,
            mode_reason: self.mode_reason.clone(),
            prefix: self.names.prefix().to_string(),
            families: self.families.clone(),
            jails,
        })
    }

    /// Forgets bans whose end has passed and takes them out of the kernel where it does not
    /// do so by itself (rules mode, and set entries too long for an ipset timeout).
    fn sweep(&mut self, now: DateTime<Utc>) -> Result<usize, FirewallError> {
        let mut expired: Vec<(String, IpAddr, Option<DateTime<Utc>>)> = Vec::new();
        for (name, jail) in &mut self.jails {
            jail.bans.retain(|host, end| {
                let over = end.is_some_and(|end| end <= now);
                if over {
                    expired.push((name.clone(), *host, *end));
                }
                !over
            });
        }
        if expired.is_empty() {
            return Ok(0);
        }
        match self.mode {
            ActiveMode::Ipset => {
                let mut batch = Batch::default();
                for (jail, host, _) in &expired {
                    if self.jails.get(jail).is_some_and(JailState::acts) {
                        batch.del(&self.names.jail_set(jail, Family::of(host)), *host);
                    }
                }
                batch.apply()?;
            }
            ActiveMode::Rules if expired.len() > REBUILD_THRESHOLD => {
                let touched = expired
                    .iter()
                    .filter(|(jail, _, _)| self.jails.get(jail).is_some_and(JailState::acts))
                    .map(|(jail, host, _)| (jail.clone(), Family::of(host)))
                    .collect();
                self.rebuild_jail_chains(&touched)?;
            }
            ActiveMode::Rules => {
                for (jail_name, host, end) in &expired {
                    let Some(jail) = self.jails.get(jail_name).filter(|jail| jail.acts()) else {
                        continue;
                    };
                    let family = Family::of(host);
                    for hook in jail.hooks() {
                        let chain = self.names.jail_chain(jail_name, hook);
                        let verdicts = rules::verdicts(jail.rule.action, hook, family);
                        for rule in rules::ban_rules(*host, *end, &verdicts) {
                            let _ = self.table(family).delete(TABLE, &chain, &rule.join(" "));
                        }
                    }
                }
            }
        }
        Ok(expired.len())
    }

    fn jail_chain_rules(&self, jail: &JailState, hook: Hook, family: Family) -> Vec<String> {
        let verdicts = rules::verdicts(jail.rule.action, hook, family);
        match self.mode {
            ActiveMode::Ipset => {
                rules::set_rules(&self.names.jail_set(&jail.rule.name, family), &verdicts)
                    .iter()
                    .map(|rule| rules::listing_text(rule))
                    .collect()
            }
            ActiveMode::Rules => {
                let mut bans: Vec<(&IpAddr, &Option<DateTime<Utc>>)> = jail
                    .bans
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

    /// Every chain logjail should have in one family, with its rules in order.
    fn expected_chains(&self, family: Family) -> BTreeMap<String, Vec<String>> {
        let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for jail in self.jails.values().filter(|jail| jail.acts()) {
            for hook in jail.hooks() {
                let jail_chain = self.names.jail_chain(&jail.rule.name, hook);
                chains
                    .entry(self.names.hook_chain(hook))
                    .or_default()
                    .extend(
                        rules::hook_jumps(hook, &jail.rule.ports, jail.rule.protocol, &jail_chain)
                            .iter()
                            .map(|rule| rules::listing_text(rule)),
                    );
                chains.insert(jail_chain, self.jail_chain_rules(jail, hook, family));
            }
        }
        chains
    }

    fn needed_hooks(&self) -> BTreeSet<Hook> {
        self.jails
            .values()
            .filter(|jail| jail.acts())
            .flat_map(JailState::hooks)
            .collect()
    }

    fn expected_sets(&self) -> BTreeMap<String, (String, Family)> {
        let mut sets = BTreeMap::new();
        if self.mode == ActiveMode::Ipset {
            for jail in self.jails.values().filter(|jail| jail.acts()) {
                for family in &self.families {
                    sets.insert(
                        self.names.jail_set(&jail.rule.name, *family),
                        (jail.rule.name.clone(), *family),
                    );
                }
            }
        }
        sets
    }

    fn snapshot(&self, family: Family) -> Result<Snapshot, FirewallError> {
        let output = self
            .table(family)
            .execute(TABLE, "-S")
            .map_err(|error| self.ipt_error(family, error.as_ref()))?;
        if !output.status.success() {
            return Err(FirewallError::Command {
                command: format!("{} -t {TABLE} -S", self.choice.iptables(family)),
                status: output.status.code(),
                stderr: backend::clean_stderr(&output.stderr),
            });
        }
        Ok(Snapshot::parse(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Makes the kernel match the state: sets, chains, jumps; removes what is ours but no
    /// longer wanted. With `adopt`, bans found in existing sets or rules are taken into the
    /// state first (a restart after a crash keeps enforcing them).
    fn ensure(&mut self, adopt: bool) -> Result<LayoutReport, FirewallError> {
        let now = self.clock.now();
        let mut report = LayoutReport::default();
        self.refresh_own(true);
        if !adopt {
            report.expired = self.sweep(now)?;
        }
        let expected_sets = self.expected_sets();
        let headers = match self.mode {
            ActiveMode::Ipset => ipset::list_headers()?,
            ActiveMode::Rules => HashMap::new(),
        };
        if self.mode == ActiveMode::Ipset {
            self.ensure_sets(&expected_sets, &headers, adopt, now, &mut report)?;
        }
        for family in self.families.clone() {
            let snapshot = self.snapshot(family)?;
            if adopt && self.mode == ActiveMode::Rules {
                self.adopt_rules(family, &snapshot, now);
            }
            self.ensure_family(family, &snapshot, &mut report)?;
        }
        // Sets can only be destroyed once no rule uses them, so after the chains.
        for name in headers.keys() {
            if self.names.owns(name) && !expected_sets.contains_key(name) {
                match ipset::destroy(name) {
                    Ok(()) => report.removed.push(format!("set {name}")),
                    Err(error) => {
                        tracing::warn!(set = %name, %error, "firewall: cannot remove a leftover set")
                    }
                }
            }
        }
        Ok(report)
    }

    fn ensure_sets(
        &mut self,
        expected: &BTreeMap<String, (String, Family)>,
        headers: &HashMap<String, ipset::SetHeader>,
        adopt: bool,
        now: DateTime<Utc>,
        report: &mut LayoutReport,
    ) -> Result<(), FirewallError> {
        let mut refill: Vec<(String, Family)> = Vec::new();
        for (set, (jail, family)) in expected {
            match headers.get(set) {
                None => {
                    ipset::create(set, *family)?;
                    report.repaired.push(format!("set {set}"));
                    refill.push((jail.clone(), *family));
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
                    if adopt {
                        let adopted = self.adopt_set(set, jail, now)?;
                        if adopted > 0 {
                            tracing::info!(set = %set, bans = adopted, "firewall: kept bans found in an existing set");
                        }
                    }
                    let known = self.jails.get(jail).map_or(0, |state| state.count(*family));
                    if header.entries < known {
                        report.repaired.push(format!(
                            "set {set} ({} of {known} entries were missing)",
                            known - header.entries
                        ));
                        refill.push((jail.clone(), *family));
                    }
                }
            }
        }
        let mut batch = Batch::default();
        for (jail, family) in refill {
            let set = self.names.jail_set(&jail, family);
            if let Some(state) = self.jails.get(&jail) {
                for (host, end) in state
                    .bans
                    .iter()
                    .filter(|(host, _)| Family::of(host) == family)
                {
                    batch.add(&set, *host, ipset::timeout_for(self.remaining(*end, now)));
                }
            }
        }
        batch.apply()
    }

    fn adopt_set(
        &mut self,
        set: &str,
        jail: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, FirewallError> {
        let entries = ipset::entries(set)?;
        let Some(state) = self.jails.get_mut(jail) else {
            return Ok(0);
        };
        let mut adopted = 0;
        for (host, timeout) in entries {
            let end = (timeout > 0).then(|| {
                now + chrono::Duration::seconds(i64::try_from(timeout).unwrap_or(i64::MAX / 1000))
            });
            if state.bans.insert(host, end).is_none() {
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    fn adopt_rules(&mut self, family: Family, snapshot: &Snapshot, now: DateTime<Utc>) {
        let names = self.names.clone();
        for (name, state) in self.jails.iter_mut().filter(|(_, jail)| jail.acts()) {
            for hook in state.hooks() {
                for rule in snapshot.rules_of(&names.jail_chain(name, hook)) {
                    if let Some((host, end)) = rules::parse_ban_rule(&rules::tokenize(rule))
                        && Family::of(&host) == family
                        && end.is_none_or(|end| end > now)
                    {
                        state.bans.entry(host).or_insert(end);
                    }
                }
            }
        }
    }

    fn ensure_family(
        &self,
        family: Family,
        snapshot: &Snapshot,
        report: &mut LayoutReport,
    ) -> Result<(), FirewallError> {
        let table = self.table(family);
        let err = |error: Box<dyn std::error::Error>| self.ipt_error(family, error.as_ref());
        let hooks = self.needed_hooks();
        let label = family.label();

        if hooks.contains(&Hook::DockerUser) {
            if !snapshot.chains.contains("DOCKER-USER") {
                // What Docker itself creates; Docker keeps it when it starts later.
                table.new_chain(TABLE, "DOCKER-USER").map_err(err)?;
                table
                    .append(TABLE, "DOCKER-USER", "-j RETURN")
                    .map_err(err)?;
                report.repaired.push(format!(
                    "{label} chain DOCKER-USER (Docker has not made it)"
                ));
            }
            match rules::docker_user_jump(snapshot.rules_of("FORWARD")) {
                rules::DockerUserJump::Missing => {
                    table
                        .insert(TABLE, "FORWARD", rules::DOCKER_USER_JUMP, 1)
                        .map_err(err)?;
                    report
                        .repaired
                        .push(format!("{label} jump FORWARD -> DOCKER-USER"));
                }
                rules::DockerUserJump::BelowDocker => {
                    self.raise_docker_user_jump(family)?;
                    report.repaired.push(format!(
                        "{label} jump FORWARD -> DOCKER-USER (moved above Docker's rules)"
                    ));
                }
                rules::DockerUserJump::InPlace => {}
            }
        }

        // Chains whose content differs are rewritten whole, atomically, in one restore.
        let expected = self.expected_chains(family);
        let mut rewrite = BTreeMap::new();
        for (chain, wanted) in &expected {
            let present = snapshot.chains.contains(chain);
            let current = snapshot.rules_of(chain);
            let is_hook_chain = Hook::ALL
                .iter()
                .any(|hook| self.names.hook_chain(*hook) == *chain);
            let same = if self.mode == ActiveMode::Rules && !is_hook_chain {
                // Per-address rules are appended as bans come: compare as sets.
                let mut a: Vec<&String> = current.iter().collect();
                let mut b: Vec<&String> = wanted.iter().collect();
                a.sort();
                b.sort();
                a == b
            } else {
                current == wanted.as_slice()
            };
            if !present || !same {
                let what = if present { "rules of" } else { "chain" };
                report.repaired.push(format!("{label} {what} {chain}"));
                rewrite.insert(chain.clone(), wanted.clone());
            }
        }
        self.restore(family, &rewrite)?;

        for hook in &hooks {
            let parent = hook.parent();
            let hook_chain = self.names.hook_chain(*hook);
            let jump = format!("-j {hook_chain}");
            let jumps = snapshot
                .rules_of(parent)
                .iter()
                .filter(|rule| **rule == jump)
                .count();
            if jumps == 0 {
                table.insert(TABLE, parent, &jump, 1).map_err(err)?;
                report
                    .repaired
                    .push(format!("{label} jump {parent} -> {hook_chain}"));
            }
            for _ in 1..jumps {
                table.delete(TABLE, parent, &jump).map_err(err)?;
                report
                    .removed
                    .push(format!("{label} duplicate jump {parent} -> {hook_chain}"));
            }
        }

        let stale: Vec<&String> = snapshot
            .chains
            .iter()
            .filter(|chain| self.names.owns(chain) && !expected.contains_key(*chain))
            .collect();
        self.remove_chains(family, snapshot, &stale, &expected)?;
        for chain in stale {
            report.removed.push(format!("{label} chain {chain}"));
        }
        Ok(())
    }

    /// Moves the jump to `DOCKER-USER` to the top of `FORWARD`, as Docker does for IPv4, in
    /// one transaction, so that no packet ever passes `FORWARD` without it. The delete takes the
    /// first (only) jump, the one below Docker's rules.
    fn raise_docker_user_jump(&self, family: Family) -> Result<(), FirewallError> {
        let script = format!(
            "*{TABLE}\n-D FORWARD {jump}\n-I FORWARD 1 {jump}\nCOMMIT\n",
            jump = rules::DOCKER_USER_JUMP
        );
        backend::run(
            self.choice.restore(family),
            &["--noflush", "--wait"],
            Some(script.as_bytes()),
        )
        .map(drop)
    }

    /// Deletes chains of ours: first the jumps to them from chains we do not rewrite, then
    /// their rules, then the chains.
    fn remove_chains(
        &self,
        family: Family,
        snapshot: &Snapshot,
        doomed: &[&String],
        rewritten: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), FirewallError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let table = self.table(family);
        let err = |error: Box<dyn std::error::Error>| self.ipt_error(family, error.as_ref());
        for (chain, chain_rules) in &snapshot.rules {
            // Our own chains that stay only ever jump to chains that stay.
            if self.names.owns(chain) || rewritten.contains_key(chain) {
                continue;
            }
            for rule in chain_rules {
                let tokens = rules::tokenize(rule);
                let target = tokens
                    .iter()
                    .position(|token| token == "-j" || token == "-g")
                    .and_then(|at| tokens.get(at + 1));
                if target.is_some_and(|target| doomed.contains(&target)) {
                    table.delete(TABLE, chain, rule).map_err(err)?;
                }
            }
        }
        for chain in doomed {
            table.flush_chain(TABLE, chain).map_err(err)?;
        }
        for chain in doomed {
            table.delete_chain(TABLE, chain).map_err(err)?;
        }
        Ok(())
    }

    /// Writes chains whole with `iptables-restore --noflush`: declaring a chain empties it
    /// (or creates it), and the new rules go in within the same transaction.
    fn restore(
        &self,
        family: Family,
        chains: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), FirewallError> {
        if chains.is_empty() {
            return Ok(());
        }
        let mut script = String::from("*filter\n");
        for chain in chains.keys() {
            script.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for (chain, chain_rules) in chains {
            for rule in chain_rules {
                script.push_str(&rules::restore_line(chain, rule));
                script.push('\n');
            }
        }
        script.push_str("COMMIT\n");
        backend::run(
            self.choice.restore(family),
            &["--noflush", "--wait"],
            Some(script.as_bytes()),
        )
        .map(drop)
    }

    fn shutdown(&mut self, keep_bans: bool) -> Result<(), FirewallError> {
        if keep_bans {
            tracing::info!("firewall: stopping, bans stay in place");
            return Ok(());
        }
        let mut first_error = None;
        for family in self.families.clone() {
            let result = self.snapshot(family).and_then(|snapshot| {
                let ours: Vec<&String> = snapshot
                    .chains
                    .iter()
                    .filter(|chain| self.names.owns(chain))
                    .collect();
                self.remove_chains(family, &snapshot, &ours, &BTreeMap::new())
            });
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        if self.mode == ActiveMode::Ipset {
            match ipset::list_headers() {
                Ok(headers) => {
                    for name in headers.keys().filter(|name| self.names.owns(name)) {
                        if let Err(error) = ipset::destroy(name) {
                            first_error.get_or_insert(error);
                        }
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        tracing::info!("firewall: stopped, chains and sets removed");
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn log_report(when: &str, report: &LayoutReport) {
    if when == "start" {
        if !report.is_clean() {
            tracing::info!(created = ?report.repaired, removed = ?report.removed, "firewall: layout in place");
        }
        return;
    }
    if !report.repaired.is_empty() {
        tracing::warn!(repaired = ?report.repaired, "firewall {when}: put back what was missing");
    }
    if !report.removed.is_empty() {
        tracing::info!(removed = ?report.removed, "firewall {when}: removed leftovers");
    }
}
