//! The fault timeline: partitions, crashes, degraded links, clock skew, heal-all. Crash,
//! restart and clock skew are inputs of the node concerned (logged, replayable); network faults
//! change the network model.

use super::World;
use crate::scenario::FaultKind;
use crate::sim::event::SimEvent;
use crate::sim::federation::ServerIdx;
use crate::sim::identity_event::IdentityInput;
use crate::sim::network::Degrade;
use crate::sim::server::Input;

impl World {
    pub(super) fn fault(&mut self, i: usize, start: bool) {
        let f = self.scenario.faults[i].clone();
        let t = self.now;
        let names_to_mask = |names: &[String], w: &World| -> Vec<bool> {
            let mut mask = vec![false; w.nodes.len()];
            for n in names {
                if let Some(k) = w.directory.node(n) {
                    mask[k as usize] = true;
                }
            }
            mask
        };
        let what = match (&f.kind, start) {
            (FaultKind::Partition { sides }, true) => {
                let mut side_of = vec![sides.len() as u32; self.nodes.len()];
                for (si, side) in sides.iter().enumerate() {
                    for name in side {
                        if let Some(k) = self.directory.node(name) {
                            side_of[k as usize] = si as u32;
                        }
                    }
                }
                self.network.partition(i, side_of);
                "partition"
            }
            (FaultKind::Partition { .. }, false) => {
                self.network.heal_partition(i);
                "heal"
            }
            (FaultKind::Crash { server }, _) => {
                let k = self.directory.node(server).expect("validated");
                self.down[k as usize] = !start;
                let input = if start { Input::Crash } else { Input::Restart };
                self.deliver_now(k, input);
                self.down[k as usize] = start;
                if start {
                    "crash"
                } else {
                    "restart"
                }
            }
            (FaultKind::Degrade { from, to, symmetric, loss, latency }, true) => {
                let degrade = Degrade {
                    id: i,
                    from: names_to_mask(from, self),
                    to: names_to_mask(to, self),
                    symmetric: *symmetric,
                    loss: *loss,
                    latency: *latency,
                };
                self.network.degrade(degrade);
                "degrade"
            }
            (FaultKind::Degrade { .. }, false) => {
                self.network.end_degrade(i);
                "degrade_end"
            }
            (FaultKind::ClockSkew { server, skew_us }, _) => {
                let k = self.directory.node(server).expect("validated");
                let skew = if start { *skew_us } else { self.scenario.servers[k as usize].clock_skew_us };
                self.deliver_now(k, Input::SetClockSkew { skew_us: skew });
                if start {
                    "clock_skew"
                } else {
                    "clock_skew_end"
                }
            }
            (FaultKind::RotateKey { server, keep_old }, _) => {
                let k = self.directory.node(server).expect("validated");
                self.network.key_rotated(k, t);
                self.deliver_now(k, Input::RotateKey { keep_old: *keep_old });
                "rotate_key"
            }
            (FaultKind::EraseAccount { user }, _) => {
                let k = self.directory.home_of(user).expect("validated");
                self.deliver_now(k, Input::EraseAccount { user: user.clone() });
                "erase_account"
            }
            (FaultKind::ReregisterAccount { user }, _) => {
                let k = self.directory.home_of(user).expect("validated");
                self.deliver_now(k, Input::ReregisterAccount { user: user.clone() });
                "reregister_account"
            }
            (FaultKind::RotatePepper { server, pepper }, _) => {
                let k = self.directory.node(server).expect("validated");
                let pepper = pepper.clone().unwrap_or_else(|| {
                    let bytes = crate::sim::rng::RngStreams::new(self.seed).seed_bytes(&format!("pepper/{server}/{i}"));
                    crate::protocol::crypto::b64_url_encode(&bytes[..12])
                });
                self.deliver_now(k, Input::Identity(IdentityInput::RotatePepper { pepper }));
                "rotate_pepper"
            }
            (FaultKind::RevokeIdentityKey { server }, _) => {
                let k = self.directory.node(server).expect("validated");
                let seed =
                    crate::sim::rng::RngStreams::new(self.seed).seed_bytes(&format!("identity-key/{server}/{i}"));
                self.deliver_now(k, Input::Identity(IdentityInput::RevokeKey { seed }));
                "revoke_identity_key"
            }
            (FaultKind::HealAll, _) => {
                self.network.heal_all();
                for k in 0..self.nodes.len() {
                    if self.down[k] {
                        self.down[k] = false;
                        self.deliver_now(k as ServerIdx, Input::Restart);
                    }
                }
                "heal_all"
            }
        };
        self.emit(t, None, &SimEvent::Fault { fault: i, what: what.into(), start });
    }
}
