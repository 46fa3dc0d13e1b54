//! The firewall thread: its command loop and the ban bookkeeping from which the kernel
//! side can always be rebuilt.
//!
//! Everything kernel-side is derived from `jails` (rules and bans) by [`Owner::ensure`],
//! which takes a snapshot, asks `plan` what to change and has `apply` carry it out:
//! start-up, repairs after a flush, run-time jails and removals all go through it. Single
//! bans and unbans take the fast path (one `ipset` or `iptables` call) and fall back to
//! `ensure` when the kernel side turns out to be missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::apply::Kernel;
use super::backend;
use super::ipset::{self, Batch};
use super::names::{Family, Hook, Names, Table};
use super::plan::{self, Bans, JailLayout, Layout, Snapshot};
use super::rules;
use super::safety::{self, OwnAddress};
use super::target::{self, Target, TargetChoice};
use super::{
    ActiveMode, BanOutcome, BanRequest, BatchOutcome, Command, FirewallBan, FirewallError,
    FirewallOptions, FirewallStatus, HookStatus, JailFirewallStatus, JailRule, LayoutReport,
    SetStatus,
};
use crate::clock::SharedClock;
use crate::config::{FirewallConfig, FirewallMode};

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
    bans: Bans,
    /// Whether the log already suggested ipset mode for this jail's size.
    advised: bool,
}

impl JailState {
    fn acts(&self) -> bool {
        self.rule.acts()
    }

    fn hooks(&self, target: Target) -> BTreeSet<Hook> {
        super::plan::hooks_of(&self.rule, target)
    }

    fn count(&self, family: Family) -> usize {
        super::plan::bans_in(&self.bans, family)
    }
}

pub(super) struct Owner {
    kernel: Kernel,
    mode: ActiveMode,
    /// Why `mode`: configured, or what `auto` found (for `status`).
    mode_reason: String,
    /// Where `docker-user` bans go, and why (for the log and `status`).
    target: TargetChoice,
    names: Names,
    clock: SharedClock,
    fixed_own: Option<Vec<OwnAddress>>,
    /// When `own` was last read from the kernel (Docker adds bridges at any time).
    own_read: Instant,
    own: Vec<OwnAddress>,
    families: Vec<Family>,
    jails: BTreeMap<String, JailState>,
    /// Room the sets created at start are given, by set name (see
    /// [`FirewallOptions::expected_bans`]); emptied once the start's layout is in place.
    set_room: HashMap<String, usize>,
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
        let kernel = Kernel::new(choice);
        let families = kernel.working_families()?;
        let (mode, mode_reason) = resolve_mode(config.mode)?;
        let target = target::choose(config.target, kernel.choice());
        tracing::info!(
            backend = %kernel.choice().backend,
            reason = %kernel.choice().reason,
            mode = %mode,
            mode_reason = %mode_reason,
            target = %target.target,
            target_reason = %target.reason,
            prefix = %config.chain_prefix,
            "firewall: using iptables-{} for a {} target", kernel.choice().backend, target.target
        );
        let own = options
            .own_addresses
            .clone()
            .unwrap_or_else(safety::system_addresses);
        let names = Names::new(&config.chain_prefix);
        let set_room = options
            .expected_bans
            .iter()
            .map(|((jail, family), count)| (names.jail_set(jail, *family), *count))
            .collect();
        let mut owner = Owner {
            kernel,
            mode,
            mode_reason,
            target,
            names,
            clock: options.clock,
            fixed_own: options.own_addresses,
            own_read: Instant::now(),
            own,
            families,
            jails: BTreeMap::new(),
            set_room,
        };
        for rule in jails {
            owner.check_names(&rule)?;
            owner.warn_if_reject_drops(&rule);
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
        owner.set_room.clear();
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

    /// Says once per definition that a rejecting jail only drops in raw `PREROUTING`, where
    /// the target (not the configuration, which refuses `prerouting` with `reject`) put it.
    fn warn_if_reject_drops(&self, rule: &JailRule) {
        if rule.acts()
            && matches!(rule.action, crate::config::FirewallAction::Reject(_))
            && plan::hooks_of(rule, self.target.target).contains(&Hook::RawPrerouting)
        {
            tracing::warn!(
                jail = %rule.name,
                action = %rule.action,
                target = %self.target.target,
                "firewall: this jail's bans on the ways into containers sit in raw PREROUTING, \
                 where iptables cannot reject: banned clients are dropped there (they time out)"
            );
        }
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
                    self.kernel.choice().iptables(family)
                ),
            })
        }
    }

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
        let remaining = plan::remaining(request.end, now);
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
                self.kernel.ipset_command(&[
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

    fn replace_ban_rules(
        &self,
        jail: &str,
        host: IpAddr,
        previous: Option<Option<DateTime<Utc>>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<(), FirewallError> {
        let state = self.jail(jail)?;
        let family = Family::of(&host);
        for hook in state.hooks(self.target.target) {
            let chain = self.names.jail_chain(jail, hook);
            let verdicts = rules::verdicts(state.rule.action, hook, family);
            for rule in rules::ban_rules(host, end, &verdicts) {
                self.kernel
                    .append_rule(family, hook.table(), &chain, &rule.join(" "))?;
            }
            if let Some(old_end) = previous {
                for rule in rules::ban_rules(host, old_end, &verdicts) {
                    // Gone already is fine: the new rules are in place.
                    let _ = self
                        .kernel
                        .delete_rule(family, hook.table(), &chain, &rule.join(" "));
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
            ActiveMode::Ipset => self.kernel.set_batch(batch),
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
        for (family, table) in Family::ALL
            .into_iter()
            .flat_map(|family| Table::ALL.map(|table| (family, table)))
        {
            let mut chains = BTreeMap::new();
            for (jail, _) in touched.iter().filter(|(_, f)| *f == family) {
                let state = self.jail(jail)?;
                let hooks = state.hooks(self.target.target);
                for hook in hooks.into_iter().filter(|hook| hook.table() == table) {
                    chains.insert(
                        self.names.jail_chain(jail, hook),
                        plan::jail_chain_rules(
                            &self.names,
                            self.mode,
                            &state.rule,
                            &state.bans,
                            hook,
                            family,
                        ),
                    );
                }
            }
            self.kernel.write_chains(family, table, chains.iter())?;
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
                self.kernel
                    .ipset_command(&["del", "-exist", &set, &host.to_string()])?;
            }
            ActiveMode::Rules => {
                let state = self.jail(jail_name)?;
                for hook in state.hooks(self.target.target) {
                    let chain = self.names.jail_chain(jail_name, hook);
                    let verdicts = rules::verdicts(state.rule.action, hook, family);
                    for rule in rules::ban_rules(host, end, &verdicts) {
                        // Missing already (flushed by someone) is what we want anyway.
                        let _ =
                            self.kernel
                                .delete_rule(family, hook.table(), &chain, &rule.join(" "));
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
                    self.kernel
                        .flush_set(&self.names.jail_set(jail_name, family))?;
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
        if self
            .jails
            .get(&rule.name)
            .is_none_or(|existing| existing.rule != rule)
        {
            self.warn_if_reject_drops(&rule);
        }
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
        let headers = self.kernel.set_headers(self.mode)?;
        let jails = self
            .jails
            .values()
            .map(|jail| {
                let name = &jail.rule.name;
                let hooks = if jail.acts() {
                    jail.hooks(self.target.target)
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
            backend: self.kernel.choice().backend,
            backend_reason: self.kernel.choice().reason.clone(),
            mode: self.mode,
            mode_reason: self.mode_reason.clone(),
            target: self.target.target,
            target_reason: self.target.reason.clone(),
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
                self.kernel.set_batch(batch)?;
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
                    for hook in jail.hooks(self.target.target) {
                        let chain = self.names.jail_chain(jail_name, hook);
                        let verdicts = rules::verdicts(jail.rule.action, hook, family);
                        for rule in rules::ban_rules(*host, *end, &verdicts) {
                            let _ = self.kernel.delete_rule(
                                family,
                                hook.table(),
                                &chain,
                                &rule.join(" "),
                            );
                        }
                    }
                }
            }
        }
        Ok(expired.len())
    }

    /// The layout the state calls for, jails in name order.
    fn jail_layouts(&self) -> Vec<JailLayout<'_>> {
        self.jails
            .values()
            .map(|jail| JailLayout {
                rule: &jail.rule,
                bans: &jail.bans,
            })
            .collect()
    }

    /// Makes the kernel match the state: sets, chains, jumps; removes what is ours but no
    /// longer wanted. With `adopt`, bans found in existing sets or rules are taken into the
    /// state first (a restart after a crash keeps enforcing them).
    fn ensure(&mut self, adopt: bool) -> Result<LayoutReport, FirewallError> {
        let now = self.clock.now();
        self.refresh_own(true);
        let expired = if adopt { 0 } else { self.sweep(now)? };
        let raw_required = plan::uses_table(
            self.jails.values().map(|jail| &jail.rule),
            self.target.target,
            Table::Raw,
        );
        let snapshot = self
            .kernel
            .snapshot(self.mode, &self.families, raw_required)?;
        if adopt {
            self.adopt(&snapshot, now)?;
        }
        let jails = self.jail_layouts();
        let layout = Layout {
            names: &self.names,
            mode: self.mode,
            target: self.target.target,
            families: &self.families,
            jails: &jails,
            now,
            set_room: &self.set_room,
        };
        let operations = plan::plan(&layout, &snapshot)?;
        drop(jails);
        let mut report = self.kernel.apply(&operations)?;
        report.expired = expired;
        Ok(report)
    }

    /// Takes into the state the bans the kernel still holds: entries of our sets that can be
    /// reused (ipset mode), per-address rules whose end has not passed (rules mode).
    fn adopt(&mut self, snapshot: &Snapshot, now: DateTime<Utc>) -> Result<(), FirewallError> {
        let names = self.names.clone();
        let families = self.families.clone();
        let mode = self.mode;
        let target = self.target.target;
        for (name, state) in self.jails.iter_mut().filter(|(_, jail)| jail.acts()) {
            match mode {
                ActiveMode::Ipset => {
                    for family in &families {
                        let set = names.jail_set(name, *family);
                        if !snapshot
                            .sets
                            .get(&set)
                            .is_some_and(|header| header.fits(*family))
                        {
                            continue;
                        }
                        let mut adopted = 0;
                        for (host, timeout) in self.kernel.set_entries(&set)? {
                            let end = (timeout > 0).then(|| {
                                now + chrono::Duration::seconds(
                                    i64::try_from(timeout).unwrap_or(i64::MAX / 1000),
                                )
                            });
                            if state.bans.insert(host, end).is_none() {
                                adopted += 1;
                            }
                        }
                        if adopted > 0 {
                            tracing::info!(set = %set, bans = adopted, "firewall: kept bans found in an existing set");
                        }
                    }
                }
                ActiveMode::Rules => {
                    for family in &families {
                        for hook in state.hooks(target) {
                            let listing = snapshot.listing(*family, hook.table());
                            for rule in listing.rules_of(&names.jail_chain(name, hook)) {
                                if let Some((host, end)) =
                                    rules::parse_ban_rule(&rules::tokenize(rule))
                                    && Family::of(&host) == *family
                                    && end.is_none_or(|end| end > now)
                                {
                                    state.bans.entry(host).or_insert(end);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn shutdown(&mut self, keep_bans: bool) -> Result<(), FirewallError> {
        if keep_bans {
            tracing::info!("firewall: stopping, bans stay in place");
            return Ok(());
        }
        let mut first_error = None;
        let raw_used = plan::uses_table(
            self.jails.values().map(|jail| &jail.rule),
            self.target.target,
            Table::Raw,
        );
        for family in self.families.clone() {
            for table in Table::ALL {
                // A table's chains go in order and stop at the first failure; the other
                // tables, families and the sets are still tried.
                let listing = match table {
                    Table::Filter => self.kernel.listing(family, table).map(Some),
                    // None: no raw table here, and no jail of ours needed one.
                    Table::Raw => self.kernel.raw_listing(family, raw_used),
                };
                let result = listing.and_then(|listing| {
                    listing.map_or(Ok(()), |listing| {
                        plan::teardown(&self.names, family, table, &listing)
                            .iter()
                            .try_for_each(|operation| self.kernel.run(operation))
                    })
                });
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
            }
        }
        if self.mode == ActiveMode::Ipset {
            match self.kernel.set_headers(self.mode) {
                Ok(headers) => {
                    for operation in plan::teardown_sets(&self.names, &headers) {
                        if let Err(error) = self.kernel.run(&operation) {
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
