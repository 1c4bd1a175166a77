//! CPU loans (`cpupool-cpu-loan CPU P MS`, seed 004's CPU borrowing): a CPU
//! moves from its pool to pool P for a bounded time and comes back by
//! itself. The rules record the loan and return the actions that move the
//! CPU (the usual negotiation, `cpus.rs`) both ways; here the loan is
//! started, ended on request, and ended when due: [`Pools::service`] runs
//! between commands and the console wakes for the next end
//! ([`Pools::next_loan_end_ns`]), also while a command waits (`sleep`,
//! `top`).

use crate::manager::Pools;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tarn_pool_manager::pools::PoolId;
use tarn_rt::Resources;

impl Pools {
    /// `cpupool-cpu-loan`: lends CPU `cpu` to `pool` for `ms` ms; returns
    /// the lender's name.
    pub fn lend(
        &mut self,
        res: &mut Resources,
        cpu: u32,
        pool: PoolId,
        ms: u64,
    ) -> Result<String, String> {
        let now_ms = self.clock.now_us() / 1000;
        let from = self.manager.cpu_owner(cpu);
        self.operate(res, &format!("CPU {cpu}"), |m| {
            m.lend(cpu, pool, now_ms, ms)
        })?;
        Ok(from
            .and_then(|f| self.manager.pool(f))
            .map_or_else(String::new, |f| f.spec.name.clone()))
    }

    /// `cpupool-cpu-loan-end`: CPU `cpu` goes back to its lender now.
    pub fn end_loan(&mut self, res: &mut Resources, cpu: u32) -> Result<(), String> {
        self.operate(res, &format!("CPU {cpu}"), |m| m.end_loan(cpu))
    }

    /// Ends the loans that are due: each CPU goes back to its lender.
    pub(crate) fn end_due_loans(&mut self, res: &mut Resources) {
        // The clock is a system call: read it only while a loan runs.
        let loans_due = if self.manager.loans().next().is_some() {
            self.manager.loans_due(self.clock.now_us() / 1000)
        } else {
            Vec::new()
        };
        for cpu in loans_due {
            let from = self.manager.loans().find(|l| l.cpu == cpu).map(|l| l.from);
            if let Ok(actions) = self.manager.end_loan(cpu) {
                self.apply(res, actions);
                if let Some(from) = from {
                    crate::output::say_line(&format!(
                        "loan: CPU {cpu} is back in {}",
                        self.pool_name(from)
                    ));
                }
            }
        }
    }

    /// How long until the next loan ends (ns), if one runs.
    pub fn next_loan_end_ns(&self) -> Option<u64> {
        self.manager.loans().next()?;
        let now_ms = self.clock.now_us() / 1000;
        self.manager
            .loans()
            .map(|l| l.until_ms.saturating_sub(now_ms).max(1) * 1_000_000)
            .min()
    }
}
