//! Runs firewall operations through iptables and ipset, and reads what the kernel holds:
//! the only code that starts those programs for the firewall thread.
//!
//! Layout changes come as [`Operation`]s from `plan`; the ban paths use the few direct calls
//! below (one set entry through a running `ipset -`, one rule appended or deleted, chains
//! rewritten in one `iptables-restore --noflush` transaction, an `ipset restore` batch).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use iptables::IPTables;

use super::backend::{self, BackendChoice};
use super::ipset::{self, Batch, SetHeader};
use super::names::Family;
use super::plan::{Listing, Operation, Snapshot};
use super::rules;
use super::{ActiveMode, FirewallError, LayoutReport};

const TABLE: &str = "filter";

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
                &["-w", "-t", TABLE, "-S"],
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

    /// `iptables -S` of one family.
    pub fn listing(&self, family: Family) -> Result<Listing, FirewallError> {
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

    /// What the layout is compared with: the sets, then each family's listing.
    pub fn snapshot(
        &self,
        mode: ActiveMode,
        families: &[Family],
    ) -> Result<Snapshot, FirewallError> {
        let sets = self.set_headers(mode)?;
        let mut listings = BTreeMap::new();
        for family in families {
            listings.insert(*family, self.listing(*family)?);
        }
        Ok(Snapshot { listings, sets })
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
            Operation::CreateSet { set, family } => ipset::create(set, *family),
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
                table.new_chain(TABLE, "DOCKER-USER").map_err(err)?;
                table.append(TABLE, "DOCKER-USER", "-j RETURN").map_err(err)
            }
            Operation::InsertDockerUserJump { family } => self
                .table(*family)
                .insert(TABLE, "FORWARD", rules::DOCKER_USER_JUMP, 1)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::RaiseDockerUserJump { family } => {
                // As Docker does for IPv4, in one transaction, so that no packet ever passes
                // `FORWARD` without it. The delete takes the first (only) jump, the one below
                // Docker's rules.
                let script = format!(
                    "*{TABLE}\n-D FORWARD {jump}\n-I FORWARD 1 {jump}\nCOMMIT\n",
                    jump = rules::DOCKER_USER_JUMP
                );
                self.restore_script(*family, &script)
            }
            Operation::WriteChains { family, chains } => {
                self.write_chains(*family, chains.iter().map(|w| (&w.chain, &w.rules)))
            }
            Operation::InsertJump {
                family,
                parent,
                target,
            } => self
                .table(*family)
                .insert(TABLE, parent, &format!("-j {target}"), 1)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteDuplicateJump {
                family,
                parent,
                target,
            } => self
                .table(*family)
                .delete(TABLE, parent, &format!("-j {target}"))
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteRule {
                family,
                chain,
                rule,
            } => self.delete_rule(*family, chain, rule),
            Operation::FlushChain { family, chain } => self
                .table(*family)
                .flush_chain(TABLE, chain)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DeleteChain { family, chain } => self
                .table(*family)
                .delete_chain(TABLE, chain)
                .map_err(|error| self.ipt_error(*family, error.as_ref())),
            Operation::DestroySet { set } => ipset::destroy(set),
        }
    }

    /// Appends one rule (tokens as `iptables -S` lists them) to a chain.
    pub fn append_rule(
        &self,
        family: Family,
        chain: &str,
        rule: &str,
    ) -> Result<(), FirewallError> {
        self.table(family)
            .append(TABLE, chain, rule)
            .map_err(|error| self.ipt_error(family, error.as_ref()))
    }

    /// Deletes one rule from a chain.
    pub fn delete_rule(
        &self,
        family: Family,
        chain: &str,
        rule: &str,
    ) -> Result<(), FirewallError> {
        self.table(family)
            .delete(TABLE, chain, rule)
            .map_err(|error| self.ipt_error(family, error.as_ref()))
    }

    /// Writes chains whole with `iptables-restore --noflush`: declaring a chain empties it
    /// (or creates it), and the new rules go in within the same transaction.
    pub fn write_chains<'c>(
        &self,
        family: Family,
        chains: impl Iterator<Item = (&'c String, &'c Vec<String>)> + Clone,
    ) -> Result<(), FirewallError> {
        let mut script = String::from("*filter\n");
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
