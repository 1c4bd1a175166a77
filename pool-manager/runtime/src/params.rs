//! Scheduling parameters: a policy declares its per-domain and per-pool
//! parameters when its server greets (`servers.rs`); they travel as
//! `key=value` text to the server, whose policy validates them and
//! refuses with one error naming the key (nothing changes then). A
//! domain's parameters are kept by the rules with the domain, also those
//! its pool's policy does not declare (as xl keeps a domain's credit
//! weight in a SEDF pool), and handed to every server that adopts it.

use crate::courier::{Answer, ParamInfo};
use crate::manager::Pools;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::pools::{DomainId, DomainParams, PoolId, CONTROL_DOMAIN};
use tarn_rt::abi::sched_protocol::SchedRequest;

impl Pools {
    /// The keys `pool`'s policy declares for domains (or for the pool).
    pub(crate) fn declared(&self, pool: PoolId, of_pool: bool) -> Vec<String> {
        self.pools
            .get(&pool)
            .and_then(|p| p.server.as_ref())
            .map(|s| {
                if of_pool {
                    &s.pool_params
                } else {
                    &s.domain_params
                }
            })
            .map(|list| list.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Refuses keys `pool`'s policy does not declare (naming the first).
    pub fn check_declared(&self, pool: PoolId, params: &DomainParams) -> Result<(), String> {
        let keys = self.declared(pool, false);
        match params.iter().find(|(k, _)| !keys.iter().any(|d| d == k)) {
            None => Ok(()),
            Some((key, _)) => Err(format!(
                "{key}: not a parameter of policy {} (it has: {})",
                self.policy_of(pool),
                if keys.is_empty() {
                    String::from("none")
                } else {
                    keys.join(", ")
                }
            )),
        }
    }

    /// Gives `pool`'s server those of `params` its policy declares (the
    /// others are kept for a policy that has them, as xl keeps a domain's
    /// credit weight in a SEDF pool).
    pub(crate) fn send_params(
        &mut self,
        pool: PoolId,
        domain: DomainId,
        params: &DomainParams,
    ) -> Result<(), String> {
        if self.manager.pool(pool).is_none() {
            return Err(String::from("no such pool"));
        }
        let keys = self.declared(pool, false);
        let text = params.text(|k| keys.iter().any(|d| d == k));
        if text.is_empty() {
            return Ok(());
        }
        let request = SchedRequest::SetDomainParams {
            domain: domain.0,
            params: &text,
        };
        self.request(pool, &request, 0).map(|_| ())
    }

    /// New parameters for a domain (`sched-credit -d`, `sched-sedf -d`,
    /// `sched-group`, `sched-param -d`): recorded with the domain's others
    /// and handed to its pool's server, whose policy validates them; on
    /// refusal nothing changes. `strict`: every key must be one the pool's
    /// policy declares (`sched-param`); otherwise keys of other policies
    /// are kept for later (`sched-credit` in a SEDF pool, as xl does).
    pub fn set_params(
        &mut self,
        domain: DomainId,
        changes: DomainParams,
        strict: bool,
    ) -> Result<(), String> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or("no such domain")?;
        if domain == CONTROL_DOMAIN {
            return Err(String::from(
                "the control domain is a system task, not scheduled by a pool's server",
            ));
        }
        if strict {
            self.check_declared(pool, &changes)?;
        }
        let old = self
            .manager
            .domain(domain)
            .map(|d| d.params.clone())
            .unwrap_or_default();
        self.manager
            .set_domain_params(domain, old.merged(&changes))
            .map_err(|e| format!("{e}"))?;
        if let Err(why) = self.send_params(pool, domain, &changes) {
            let _ = self.manager.set_domain_params(domain, old);
            return Err(why);
        }
        Ok(())
    }

    /// A pool's parameters (`sched-credit -s`, `sched-param -p`): `key=value`
    /// text for its server; its policy validates them.
    pub fn set_pool_params(&mut self, pool: PoolId, text: &str) -> Result<(), String> {
        if !self.pools.contains_key(&pool) {
            return Err(String::from("cpupool not active"));
        }
        self.request(pool, &SchedRequest::SetPoolParams { params: text }, 0)
            .map(|_| ())
    }

    /// `sched-group`: `domain` joins `master`'s group, or leaves its group
    /// (the policy's `group` parameter: the master's id, 0 for none).
    pub fn set_group(&mut self, domain: DomainId, master: Option<DomainId>) -> Result<(), String> {
        let pool = self
            .manager
            .domain(domain)
            .map(|d| d.pool)
            .ok_or("no such domain")?;
        if let Some(m) = master {
            if self.manager.domain(m).map(|x| x.pool) != Some(pool) {
                return Err(String::from("the master must be a domain of the same pool"));
            }
        }
        if !self.domains.contains_key(&domain) {
            return Err(String::from("the control domain is in no group"));
        }
        let mut changes = DomainParams::new();
        changes.set("group", &format!("{}", master.map_or(0, |m| m.0)));
        self.set_params(domain, changes, true)
    }

    /// What `sched-param` lists: each parameter `pool`'s policy declares
    /// (per domain, or for the pool), with its current value for `domain`
    /// (or the pool).
    pub fn param_list(
        &mut self,
        pool: PoolId,
        domain: Option<DomainId>,
    ) -> Result<(String, Vec<(ParamInfo, String)>), String> {
        let Some(server) = self.pools.get(&pool).and_then(|p| p.server.as_ref()) else {
            return Err(String::from("cpupool not active"));
        };
        let policy = server.policy.clone();
        let infos = if domain.is_some() {
            server.domain_params.clone()
        } else {
            server.pool_params.clone()
        };
        let request = match domain {
            Some(d) => SchedRequest::GetDomainParams { domain: d.0 },
            None => SchedRequest::GetPoolParams,
        };
        let text = match self.request(pool, &request, 0)? {
            Answer::Values(text) => text,
            other => return Err(format!("the scheduler server answered {other:?}")),
        };
        let value_of = |key: &str| {
            text.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == key)
                .map_or_else(|| String::from("?"), |(_, v)| String::from(v))
        };
        let list = infos
            .into_iter()
            .map(|info| {
                let value = value_of(&info.name);
                (info, value)
            })
            .collect();
        Ok((policy, list))
    }
}
