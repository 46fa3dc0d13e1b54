//! Runs firewall operations through iptables and ipset, and reads what the kernel holds:
//! the only code that starts those programs for the firewall thread.
//!
//! Layout changes come as [`Operation`]s from `plan`; the ban paths use the few direct calls
//! below (one set entry through a running `ipset -`, one rule appended or deleted, chains
//! rewritten in one `iptables-restore --noflush` transaction, an `ipset restore` batch).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use iptables::IPTables;

use super::backend::{self, Backend, BackendChoice};
use super::ipset::{self, Batch, SetHeader};
use super::names::{Family, Table};
use super::plan::{Listing, Operation, Snapshot};
use super::rules;
use super::{ActiveMode, FirewallError, LayoutReport};

/// Where `DOCKER-USER`, `FORWARD` and the families' health check are.
const FILTER: &str = "filter";

pub(super) struct Kernel {
    choice: BackendChoice,
    tables: [IPTables; 2],
    /// A running `ipset -` for single bans and unbans (ipset mode).
    session: Option<ipset::Session>,
    /// Set once a session could not be started: every command spawns `ipset` then.
    session_unavailable: bool,
}

impl Kernel {
    pub fn new(choice: BackendChoice) -> Kernel {
        let tables = [
            backend::iptables_handle(&choice, Family::V4),
            backend::iptables_handle(&choice, Family::V6),
        ];
        Kernel {
            choice,
            tables,
            session: None,
            session_unavailable: false,
        }
    }

    pub fn choice(&self) -> &BackendChoice {
        &self.choice
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

    /// The families whose iptables lists its filter table; only IPv4 failing is an error.
    pub fn working_families(&self) -> Result<Vec<Family>, FirewallError> {
        let mut families = Vec::new();
        for family in Family::ALL {
            match backend::run(
                self.choice.iptables(family),
                &["-w", "-t", FILTER, "-S"],
                None,
            ) {
                Ok(_) => families.push(family),
                Err(error) if family == Family::V6 => {
                    tracing::warn!(%error, "firewall: ip6tables does not work here; IPv6 bans are refused");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(families)
    }

    /// `iptables -t TABLE -S` of one family.
    pub fn listing(&self, family: Family, table: Table) -> Result<Listing, FirewallError> {
        let output = self
            .table(family)
            .execute(table.name(), "-S")
            .map_err(|error| self.ipt_error(family, error.as_ref()))?;
        if !output.status.success() {
            return Err(FirewallError::Command {
                command: format!("{} -t {} -S", self.choice.iptables(family), table.name()),
                status: output.status.code(),
                stderr: backend::clean_stderr(&output.stderr),
            });
        }
        Ok(Listing::parse(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Every set's header (ipset mode; rules mode has none to look at).
    pub fn set_headers(
        &self,
        mode: ActiveMode,
    ) -> Result<HashMap<String, SetHeader>, FirewallError> {
        match mode {
            ActiveMode::Ipset => ipset::list_headers(),
            ActiveMode::Rules => Ok(HashMap::new()),
        }
    }

    /// What the layout is compared with: the sets, then each family's filter and raw
    /// listings. The raw table is always looked at, so that what a run on another target left
    /// there is found; where it cannot be listed (a kernel without `iptable_raw`) it holds
    /// nothing of ours, which is only an error when a jail needs it (`raw_required`).
    pub fn snapshot(
        &self,
        mode: ActiveMode,
        families: &[Family],
        raw_required: bool,
    ) -> Result<Snapshot, FirewallError> {
        let sets = self.set_headers(mode)?;
        let mut listings = BTreeMap::new();
        for family in families {
            listings.insert(
                (*family, Table::Filter),
                self.listing(*family, Table::Filter)?,
            );
            if let Some(listing) = self.raw_listing(*family, raw_required)? {
                listings.insert((*family, Table::Raw), listing);
            }
        }
        Ok(Snapshot { listings, sets })
    }

    /// The raw table of one family; `None` when there is none to look at and no jail needs
    /// one. With iptables-legacy a table that does not exist yet is not listed (listing would
    /// make it, on a host whose rules never used it).
    pub fn raw_listing(
        &self,
        family: Family,
        required: bool,
    ) -> Result<Option<Listing>, FirewallError> {
        if !required
            && self.choice.backend == Backend::Legacy
            && !backend::legacy_table_exists(family, Table::Raw.name())
        {
            return Ok(None);
        }
        match self.listing(family, Table::Raw) {
            Ok(listing) => Ok(Some(listing)),
            Err(error) if required => Err(error),
            Err(error) => {
                tracing::debug!(%error, family = family.label(), "firewall: no raw table here");
                Ok(None)
            }
        }
    }

    /// The entries of a set with their remaining seconds (`0`: no timeout).
    pub fn set_entries(&self, set: &str) -> Result<Vec<(IpAddr, u64)>, FirewallError> {
        ipset::entries(set)
    }

    /// Runs a plan in order and reports what it did; stops at the first failure, except that
    /// a leftover set that cannot be destroyed is only warned about.
    pub fn apply(&mut self, operations: &[Operation]) -> Result<LayoutReport, FirewallError> {
        let mut report = LayoutReport::default();
        for operation in operations {
            match self.run(operation) {
                Ok(()) => operation.record(&mut report),
                Err(error) => match operation {
                    Operation::DestroySet { set } => {
                        tracing::warn!(set = %set, %error, "firewall: cannot remove a leftover set");
                    }
                    _ => return Err(error),
                },
            }
        }
        Ok(report)
    }

    /// Runs one operation.
    pub fn run(&mut self, operation: &Operation) -> Result<(), FirewallError> {
        match operation {
            Operation::CreateSet { set, family, room } => ipset::create(set, *family, *room),
            Operation::FillSet { set, entries, .. } => {
                let mut batch = Batch::default();
                for (host, timeout) in entries {
                    batch.add(set, *host, *timeout);
                }
                batch.apply()
            }
            Operation::CreateDockerUser { family } => {
                let err =
                    |error: Box<dyn std::error::Error>| self.ipt_error(*family, error.as_ref());
                let table = self.table(*family);
                table.new_chain(FILTER, "DOCKER-USER").map_err(err)?;
                table
                    .append(FILTER, "DOCKER-USER", "-j RETURN")
                    .map_err(err)
            }
            Operation::InsertDockerUserJump { family } => self
                .table(*family)
                .insert(FILTER, "FORWARD", rules::DOCKER_USER_JUMP, 1)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::RaiseDockerUserJump { family } => {
                // As Docker does for IPv4, in one transaction, so that no packet ever passes
                // `FORWARD` without it. The delete takes the first (only) jump, the one below
                // Docker's rules.
                let script = format!(
                    "*{FILTER}\n-D FORWARD {jump}\n-I FORWARD 1 {jump}\nCOMMIT\n",
                    jump = rules::DOCKER_USER_JUMP
                );
                self.restore_script(*family, &script)
            }
            Operation::WriteChains {
                family,
                table,
                chains,
            } => self.write_chains(*family, *table, chains.iter().map(|w| (&w.chain, &w.rules))),
            Operation::InsertJump {
                family,
                hook,
                target,
            } => self
                .table(*family)
                .insert(
                    hook.table().name(),
                    hook.parent(),
                    &format!("-j {target}"),
                    1,
                )
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteDuplicateJump {
                family,
                hook,
                target,
            } => self
                .table(*family)
                .delete(hook.table().name(), hook.parent(), &format!("-j {target}"))
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteRule {
                family,
                table,
                chain,
                rule,
            } => self.delete_rule(*family, *table, chain, rule),
            Operation::FlushChain {
                family,
                table,
                chain,
            } => self
                .table(*family)
                .flush_chain(table.name(), chain)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteChain {
                family,
                table,
                chain,
            } => self
                .table(*family)
                .delete_chain(table.name(), chain)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DestroySet { set } => ipset::destroy(set),
        }
    }

    /// Appends one rule (tokens as `iptables -S` lists them) to a chain.
    pub fn append_rule(
        &self,
        family: Family,
        table: Table,
        chain: &str,
        rule: &str,
    ) -> Result<(), FirewallError> {
        self.table(family)
            .append(table.name(), chain, rule)
            .map_err(|error| self.ipt_error(family, error.as_ref()))
    }

    /// Deletes one rule from a chain.
    pub fn delete_rule(
        &self,
        family: Family,
        table: Table,
        chain: &str,
        rule: &str,
    ) -> Result<(), FirewallError> {
        self.table(family)
            .delete(table.name(), chain, rule)
            .map_err(|error| self.ipt_error(family, error.as_ref()))
    }

    /// Writes chains whole with `iptables-restore --noflush`: declaring a chain empties it
    /// (or creates it), and the new rules go in within the same transaction.
    pub fn write_chains<'c>(
        &self,
        family: Family,
        table: Table,
        chains: impl Iterator<Item = (&'c String, &'c Vec<String>)> + Clone,
    ) -> Result<(), FirewallError> {
        let mut script = format!("*{}\n", table.name());
        let mut any = false;
        for (chain, _) in chains.clone() {
            script.push_str(&format!(":{chain} - [0:0]\n"));
            any = true;
        }
        if !any {
            return Ok(());
        }
        for (chain, chain_rules) in chains {
            for rule in chain_rules {
                script.push_str(&rules::restore_line(chain, rule));
                script.push('\n');
            }
        }
        script.push_str("COMMIT\n");
        self.restore_script(family, &script)
    }

    fn restore_script(&self, family: Family, script: &str) -> Result<(), FirewallError> {
        backend::run(
            self.choice.restore(family),
            &["--noflush", "--wait"],
            Some(script.as_bytes()),
        )
        .map(drop)
    }

    /// Runs many set changes in one `ipset restore`.
    pub fn set_batch(&self, batch: Batch) -> Result<(), FirewallError> {
        batch.apply()
    }

    pub fn flush_set(&self, set: &str) -> Result<(), FirewallError> {
        ipset::flush(set)
    }

    /// One ipset command through the running session, or a process of its own when no
    /// session works.
    pub fn ipset_command(&mut self, args: &[&str]) -> Result<(), FirewallError> {
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
}
